"""The pages: the Billing tab (its forms, usage chart) and the sandbox provider's billing portal, with their
templates and static files."""
