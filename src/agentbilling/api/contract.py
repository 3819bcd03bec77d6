"""The OpenAPI document's refusals: every operation lists the problem+json (pages: HTML) answers it can give,
so a schema fuzzer finds no undocumented status code; one table: docs/decisions/0202-refusals-in-one-table.md."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from agentbilling.api.responses import DESCRIPTIONS, ProblemOut

PROBLEM = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/ProblemOut"}
HTML = {"schema": {"type": "string"}}
PAGES = ("/billing", "/sandbox/")
BODY_METHODS = {"post", "put", "patch"}


def refusals(method: str, path: str) -> set[int]:
    """The error statuses an operation can answer with.

    They follow from who may call it and what it does, in this one table rather than on each route: every
    route 422 (bad input, control characters in its URL among it) and 503 (the database is unavailable)."""
    if path == "/livez":
        return set()
    if path == "/readyz":
        return {503}
    codes = {404, 422, 503}
    if method in BODY_METHODS:
        codes |= {400, 409, 413}  # 400: a body that is not JSON at all
    if path == "/v1/webhooks/{provider}":
        return codes | {400}
    if path.startswith("/v1/"):
        codes.add(401)  # a bearer credential: the operator key, a tenant API key or a user token
    if path.startswith("/v1/billing"):
        codes |= {403}  # the tab's cookie without its CSRF header
        if method == "delete":
            codes.add(409)
    if path in ("/v1/sessions", "/v1/billing/checkout", "/v1/billing/plan-change") or "/sandbox" in path:
        codes.add(402)  # not admitted; a card declined or a charge failed
    if path.startswith("/v1/sessions/") or path.startswith("/v1/tenants/") and method == "delete":
        codes.add(409)
    if path.startswith(PAGES):
        codes |= {400, 401, 402, 403, 409}
    return codes


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        schemas["ProblemOut"] = ProblemOut.model_json_schema(ref_template="#/components/schemas/{model}")
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                _document(operation, method, path)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def _document(operation: dict[str, Any], method: str, path: str) -> None:
    responses = operation.setdefault("responses", {})
    page = path.startswith(PAGES)
    for code in sorted(refusals(method, path)):
        content: dict[str, Any] = {PROBLEM: {"schema": PROBLEM_REF}}
        if page:
            content["text/html"] = HTML  # the tab's and the portal's refusals are pages
        responses[str(code)] = {"description": DESCRIPTIONS.get(code, "Refused"), "content": content}
    if page:
        if method == "post" or path == "/billing/login":
            responses.setdefault("303", {"description": "Done: on to the next page"})
        for answer in responses.values():
            if "application/json" in answer.get("content", {}) and answer is responses.get("200"):
                answer["content"] = {"text/html": HTML}
