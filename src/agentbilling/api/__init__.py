"""The HTTP API (FastAPI): operator, agent runtime and billing routes, errors as RFC 9457 problems."""
