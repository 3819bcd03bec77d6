"""The Billing tab's pages: sign-in by login link (a cookie session) and the tab itself."""

from __future__ import annotations

from datetime import date as Date
from datetime import datetime as DateTime
from pathlib import Path

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from agentbilling.api.deps import BILLING_OFF, SESSION_COOKIE, BillingDep
from agentbilling.api.problems import Problem
from agentbilling.api.schemas import LOCALE, format_money
from agentbilling.domain.card import Badge

router = APIRouter(tags=["billing tab"])
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))

_BADGE_CLASS = {Badge.ACTIVE: "active", Badge.EXPIRED: "expired", Badge.TRIAL_ENDING_SOON: "soon",
                Badge.PAYMENT_ISSUE: "issue", Badge.CANCELED: "issue", Badge.UPCOMING: "soon"}


FORMATTERS = {
    "money": format_money,
    "number": lambda n: format_decimal(n, locale=LOCALE),
    "date": lambda d: format_date(d, format="medium", locale=LOCALE) if isinstance(d, Date) else "",
    "datetime": lambda d: format_datetime(d, format="medium", locale=LOCALE) if isinstance(d, DateTime) else "",
    "badge_class": lambda b: _BADGE_CLASS.get(b, ""),
}


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


@router.get("/billing", response_class=HTMLResponse, summary="The Billing tab")
def billing_tab(request: Request, billing: BillingDep) -> HTMLResponse:
    token = request.cookies.get(SESSION_COOKIE)
    user = billing.user_for_token(token) if token else None
    if user is None:
        raise Problem(401, "unauthorized", "Sign in through a login link to open the Billing tab.")
    if not billing.settings.billing_enabled:
        return templates.TemplateResponse(request, "billing_off.html", {"message": BILLING_OFF})
    if not user.billing_visible:
        raise Problem(404, "not-found", "Not found")
    view = billing.billing_view(user.tenant_id)
    sessions = billing.list_sessions(user.tenant_id, limit=50).data
    return templates.TemplateResponse(request, "billing.html", {"view": view, "sessions": sessions, **FORMATTERS})
