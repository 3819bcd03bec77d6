"""POST /v1/sessions answered straight from ASGI, before the framework's routing and middleware."""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from agentbilling.api import problems
from agentbilling.api.routes.runtime import admit
from agentbilling.client import Billing
from agentbilling.domain.errors import DomainError

PATH = "/v1/sessions"


class FastAdmission:
    """The gate is the hottest path of the product: each agent asks it before every new session.
    This layer hands such a request to the same `runtime.admit` the route uses, and renders its
    errors with the same problem+json builders, so the answers are the same byte for byte; it only
    skips the machinery a POST otherwise goes through (routing, dependency solving, exception
    middleware). Requests with an Idempotency-Key take the full stack, where that middleware lives."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        authorization = b""
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                return await self.app(scope, receive, send)
            if name == b"authorization":
                authorization = value
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        try:
            response = await admit(scope["app"].state, authorization.decode("latin-1"), b"".join(chunks))
        except problems.Problem as problem:
            response = problem.response(PATH)
        except RequestValidationError as exc:
            response = problems.invalid(exc.errors()).response(PATH)
        except DomainError as err:
            response = problems.from_domain(err).response(PATH)
        except Exception as exc:
            if not Billing.unreachable(exc):
                raise
            response = problems.database_unavailable().response(PATH)
        await response(scope, receive, send)
