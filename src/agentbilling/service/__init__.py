"""Use cases: what operators, agents and tenants' owners can do, over storage and the domain."""
