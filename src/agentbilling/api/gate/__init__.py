"""The ASGI fast path for POST /v1/sessions and its group commit, built in the lifespan."""
