"""Who is calling: the operator, a tenant's agent runtime (API key), or a tenant's user (token)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request

from agentbilling.api.problems import Problem
from agentbilling.client import Billing
from agentbilling.usecases.results import User

SESSION_COOKIE = "agentbilling_session"
CSRF_HEADER = "X-CSRF-Token"
BILLING_OFF = "Billing is handled outside the portal — ask your administrator."
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_billing(request: Request) -> Billing:
    # async: no I/O here, and FastAPI runs a plain `def` dependency on a worker thread.
    return request.app.state.billing


BillingDep = Annotated[Billing, Depends(get_billing)]


def bearer(request: Request) -> str | None:
    return bearer_of(request.headers.get("authorization", ""))


def bearer_of(header: str) -> str | None:
    """The credential of an `Authorization: Bearer <credential>` header, or None."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def operator(request: Request, billing: BillingDep) -> None:
    expected = billing.settings.operator_key
    given = bearer(request)
    if not expected:
        raise _unauthorized("The operator API is off: set AGENTBILLING_OPERATOR_KEY.")
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise _unauthorized("A valid operator key is required (Authorization: Bearer <key>).")


INVALID_KEY = "A valid tenant API key is required (Authorization: Bearer <key>)."


def invalid_key() -> Problem:
    return _unauthorized(INVALID_KEY)


def tenant_from_key(request: Request, billing: BillingDep) -> str:
    key = bearer(request)
    tenant_id = billing.tenant_for_api_key(key) if key else None
    if tenant_id is None:
        raise invalid_key()
    return tenant_id


def csrf_token(billing: Billing, session_id: str) -> str:
    """The CSRF token of a cookie session: bound to it, so it is worth nothing with another one."""
    return hmac.new(billing.secret.encode(), b"billing-tab-csrf:" + session_id.encode(), hashlib.sha256).hexdigest()


def csrf_ok(billing: Billing, session_token: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), csrf_token(billing, session_token).encode())


def billing_user(request: Request, billing: BillingDep) -> User:
    """A user with billing rights; everyone else finds no billing here (404, R13).

    A bearer token, or the Billing tab's cookie session; a change made through the cookie must
    carry the session's CSRF token in the X-CSRF-Token header (else 403, nothing changed).
    """
    token = bearer(request)
    from_cookie = token is None
    if from_cookie:  # the cookie holds a session id, never a bearer token: two different credentials
        token = request.cookies.get(SESSION_COOKIE)
        user = billing.user_for_session(token) if token else None
    else:
        user = billing.user_for_token(token) if token else None
    if user is None or token is None:
        raise _unauthorized("A valid user token is required (Authorization: Bearer <token>).")
    if not billing.settings.billing_enabled:
        raise Problem(404, "billing-unavailable", BILLING_OFF)
    if not user.billing_visible:
        raise Problem(404, "not-found", "Not found")
    if from_cookie and request.method not in SAFE_METHODS and not csrf_ok(
            billing, token, request.headers.get(CSRF_HEADER)):
        raise Problem(403, "csrf-token-invalid",
                      "A change made with the Billing tab's cookie needs its CSRF token in the X-CSRF-Token header.")
    return user


Operator = Depends(operator)
TenantId = Annotated[str, Depends(tenant_from_key)]
BillingUser = Annotated[User, Depends(billing_user)]
