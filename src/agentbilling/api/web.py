"""Sign-in for the Billing tab: a login link from the operator API starts a cookie session."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from agentbilling.api.deps import SESSION_COOKIE, BillingDep
from agentbilling.api.problems import Problem

router = APIRouter(tags=["billing tab"])


@router.get("/billing/login", summary="Open a login link: sets the session cookie and opens the Billing tab")
def login(token: str, request: Request, billing: BillingDep) -> RedirectResponse:
    user = billing.user_for_token(token)
    if user is None:
        raise Problem(401, "unauthorized", "This login link is invalid or has expired. Ask for a new one.")
    if not user.billing_visible and billing.settings.billing_enabled:
        raise Problem(404, "not-found", "Not found")
    response = RedirectResponse("/billing", status_code=303)
    secure = (billing.settings.public_url or str(request.base_url)).startswith("https://")
    response.set_cookie(SESSION_COOKIE, token, max_age=billing.tokens.ttl_seconds, httponly=True,
                        samesite="lax", secure=secure, path="/")
    return response
