"""RFC 9457 problem details: one exception type, and the handlers that render every error as one."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentbilling.client import Billing
from agentbilling.domain.errors import CardDeclined, Conflict, DomainError, InvalidInput, NotFound, PaymentFailed
from agentbilling.domain.gate import Refusal

log = logging.getLogger("agentbilling.api")

TYPE_BASE = "https://agentbilling.dev/problems/"
MEDIA_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad request", 401: "Unauthorized", 402: "Payment required", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 413: "Content too large", 415: "Unsupported media type",
    422: "Invalid request",
    500: "Internal server error", 503: "Service unavailable",
}


class Problem(Exception):
    def __init__(self, status: int, code: str, detail: str, *, title: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.title = title or _TITLES.get(status, "Error")
        self.headers = headers
        self.extra = extra

    @classmethod
    def refused(cls, refusal: Refusal) -> Problem:
        return cls(402, refusal.code, refusal.message, title="Session not admitted")

    def response(self, instance: str | None = None) -> JSONResponse:
        body = {"type": TYPE_BASE + self.code, "title": self.title, "status": self.status, "detail": self.detail}
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return JSONResponse(body, status_code=self.status, media_type=MEDIA_TYPE, headers=self.headers)


RETRY_AFTER_S = 2  # what a 503 `database-unavailable` asks the client to wait


def database_unavailable() -> Problem:
    """The database could not be reached, or did not answer in time: nothing was done that the
    client can see (a transaction that did not commit changed nothing); try again shortly."""
    return Problem(503, "database-unavailable", "The database cannot be reached right now. Try again shortly.",
                   headers={"Retry-After": str(RETRY_AFTER_S)})


class DatabaseErrors:
    """Outermost: an error that means the database cannot be reached, raised anywhere below
    (routes, the gate's fast path, the idempotency layer), is a 503 problem+json, not a 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if started or not Billing.unreachable(exc):
                raise
            log.warning("database unavailable: %s: %s", type(exc).__name__, str(exc).strip().splitlines()[:1])
            await database_unavailable().response(scope["path"])(scope, receive, send)


def from_domain(err: DomainError) -> Problem:
    if isinstance(err, NotFound):
        status = 404
    elif isinstance(err, Conflict):
        status = 409
    elif isinstance(err, InvalidInput):
        status = 422
    elif isinstance(err, (CardDeclined, PaymentFailed)):
        status = 402
    else:
        status = 400
    return Problem(status, err.code, err.detail, **getattr(err, "extra", {}))


def invalid(errors: Any) -> Problem:
    """Bad input: a 422 listing each field and what is wrong with it."""
    listed = [{"location": ".".join(str(p) for p in err["loc"]), "message": err["msg"]} for err in errors]
    detail = "; ".join(f"{e['location']}: {e['message']}" for e in listed)
    return Problem(422, "invalid-request", detail, errors=listed)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return exc.response(request.url.path)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return from_domain(exc).response(request.url.path)

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        # A value the database cannot hold (validation should have caught it first): the caller's
        # fault, so a 422, not a 500 with a traceback in the log.
        return Problem(422, "invalid-request", "A value in the request cannot be stored.").response(
            request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid(exc.errors()).response(request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "Error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return Problem(exc.status_code, code, detail, headers=headers).response(request.url.path)


def allowed_methods(request: Request) -> list[str]:
    """Every method the path answers to, from the OpenAPI document: several routes can share a path
    (GET and PATCH of a tenant), and the router's 405 names only the first one's."""
    table = getattr(request.app.state, "allowed_methods", None)
    if table is None:
        table = request.app.state.allowed_methods = [
            (re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"),
             {m.upper() for m in operations} | ({"HEAD"} if "get" in operations else set()))
            for path, operations in request.app.openapi()["paths"].items()
        ]
    methods: set[str] = set()
    for pattern, path_methods in table:
        if pattern.match(request.url.path):
            methods |= path_methods
    return sorted(methods)
