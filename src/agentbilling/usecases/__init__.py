"""Use cases: one module per story, over the storage and the domain, each taking `now`."""
