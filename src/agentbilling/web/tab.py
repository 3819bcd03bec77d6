"""The Billing tab: sign-in by login link (a cookie session), the tab, and what is shared by its forms.
To a user without billing rights every page and form answers 404 (R13); every form carries a CSRF token."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from agentbilling.api.deps import BILLING_OFF, SESSION_COOKIE, BillingDep, csrf_ok, csrf_token
from agentbilling.api.problems import from_domain
from agentbilling.client import Billing
from agentbilling.domain.card import Badge
from agentbilling.domain.errors import DomainError
from agentbilling.domain.plan_change import MAX_AHEAD
from agentbilling.usecases.results import User
from agentbilling.web.charts import usage_chart
from agentbilling.web.rendering import formatters, locale_of, page

router = APIRouter(tags=["billing tab"])

CsrfField = Annotated[str, Form()]
CSRF_REFUSED = "This form's security token is missing or wrong. Reload the page and try again."
SIGN_IN = "Sign in through a login link from your platform to open the Billing tab."
NOT_FOUND = "There is no such page."

# What a form that went through says when the tab shows again (post, redirect, get).
DONE = {
    "limit-set": "Session limit saved.",
    "limit-reset": "Session limit reset to the plan's base limit.",
    "plan-change": "Subscription updated.",
    "plan-change-canceled": "Scheduled plan canceled.",
    "demo": "Request received",
}


class PageRefused(HTTPException):
    """A page the reader cannot have, shown as a page (not problem+json): 401, 403 or 404."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.message = message


def install(app: FastAPI) -> None:
    @app.exception_handler(PageRefused)
    async def refused(request: Request, exc: PageRefused) -> Response:
        heading = {401: "Sign in", 403: "Forbidden", 404: "Not found"}.get(exc.status_code, "Billing")
        return page(request, "billing_message.html", {"heading": heading, "message": exc.message}, exc.status_code)


def signed_in(request: Request, billing: Billing) -> tuple[User, str]:
    """The user of the cookie session and its id; a user without billing rights finds nothing (404)."""
    session_id = request.cookies.get(SESSION_COOKIE)
    user = billing.user_for_session(session_id) if session_id else None
    if user is None or session_id is None:
        raise PageRefused(401, SIGN_IN)
    if billing.settings.billing_enabled and not user.billing_visible:
        raise PageRefused(404, NOT_FOUND)
    return user, session_id


def form_user(request: Request, billing: Billing, csrf: str) -> tuple[User, str]:
    """The user behind a form post and their session's token: signed in, with billing rights,
    billing on, the right CSRF token (else a 403 page that changes nothing)."""
    user, token = signed_in(request, billing)
    if not billing.settings.billing_enabled:
        raise PageRefused(404, BILLING_OFF)
    if not csrf_ok(billing, token, csrf):
        raise PageRefused(403, CSRF_REFUSED)
    return user, token


def back_to_tab(done: str, anchor: str = "") -> RedirectResponse:
    return RedirectResponse(f"/billing?done={done}{anchor}", status_code=303)


def status_of(err: DomainError) -> int:
    return from_domain(err).status


def tab_context(request: Request, billing: Billing, user: User, token: str) -> dict[str, Any]:
    """Everything the tab and its dialogs' own pages show."""
    view = billing.billing_view(user.tenant_id)
    current = view.cards[0]
    running = view.paid_plan_running  # Subscribe changes the plan
    today = billing.now().date()
    return {
        "user": user,
        "view": view,
        "current": current,
        "upcoming": next((c for c in view.cards if c.badge is Badge.UPCOMING), None),
        "running": running,
        "current_plan_id": current.plan.id if running and current.plan else None,
        "csrf": csrf_token(billing, token),
        "min_date": (today + timedelta(days=1)).isoformat(),
        "max_date": (today + MAX_AHEAD).isoformat(),
    }


LINK_INVALID = "This login link is invalid, has expired or was already used. Ask your platform for a new one."
# A login link carries a secret in its URL: no page of it sends a Referer, and none is cached.
LINK_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def _signed_in_quietly(request: Request, billing: Billing) -> tuple[User, str] | None:
    session_id = request.cookies.get(SESSION_COOKIE)
    user = billing.user_for_session(session_id) if session_id else None
    return (user, session_id) if user is not None and session_id else None


def _open_session(request: Request, billing: Billing, code: str, replacing: str | None) -> Response:
    opened = billing.sign_in(code, replacing)
    if opened is None:
        raise PageRefused(401, LINK_INVALID)
    session_id, _ = opened
    response = RedirectResponse("/billing", status_code=303, headers=LINK_HEADERS)
    secure = billing.public_url(str(request.base_url)).startswith("https://")
    response.set_cookie(SESSION_COOKIE, session_id, max_age=billing.web_sessions.session_seconds, httponly=True,
                        samesite="lax", secure=secure, path="/")
    return response


@router.get("/billing/login", response_class=HTMLResponse, responses={303: {"description": "Signed in"}},
            summary="Open a login link: its single-use code becomes a cookie session (or, signed in as "
                    "someone else, a page that asks first)")
def login(request: Request, billing: BillingDep, code: str = "") -> Response:
    user = billing.login_code_user(code) if code else None
    if user is None:
        raise PageRefused(401, LINK_INVALID)
    if not user.billing_visible and billing.settings.billing_enabled:
        raise PageRefused(404, NOT_FOUND)
    current = _signed_in_quietly(request, billing)
    if current is not None and (current[0].tenant_id, current[0].id) != (user.tenant_id, user.id):
        # Another person's (or tenant's) link: never replace a session silently (issue 14, finding 4).
        return page(request, "billing_switch.html", {
            "current": current[0], "new": user, "code": code, "csrf": csrf_token(billing, current[1]),
        }, headers=LINK_HEADERS)
    return _open_session(request, billing, code, current[1] if current else None)


@router.post("/billing/login", response_class=HTMLResponse, responses={303: {"description": "Signed in"}},
             summary="Switch account: use a login link while signed in as someone else (from its confirm page)")
def switch_account(request: Request, billing: BillingDep, code: Annotated[str, Form()] = "",
                   csrf: CsrfField = "") -> Response:
    current = _signed_in_quietly(request, billing)
    if current is not None and not csrf_ok(billing, current[1], csrf):
        raise PageRefused(403, CSRF_REFUSED)
    user = billing.login_code_user(code) if code else None
    if user is None:
        raise PageRefused(401, LINK_INVALID)
    if not user.billing_visible and billing.settings.billing_enabled:
        raise PageRefused(404, NOT_FOUND)
    return _open_session(request, billing, code, current[1] if current else None)


@router.post("/billing/logout", response_class=HTMLResponse, summary="Sign out: ends the cookie session at once")
def logout(request: Request, billing: BillingDep, csrf: CsrfField = "") -> Response:
    _, session_id = signed_in(request, billing)
    if not csrf_ok(billing, session_id, csrf):
        raise PageRefused(403, CSRF_REFUSED)
    billing.sign_out(session_id)
    response = page(request, "billing_message.html", {"heading": "Signed out", "message": SIGN_IN},
                    headers={"Cache-Control": "no-store"})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def render_tab(request: Request, billing: Billing, user: User, token: str, *, status: int = 200,
               cursor: str | None = None, done: str | None = None, errors: dict[str, str] | None = None,
               values: dict[str, str] | None = None) -> Response:
    ctx = tab_context(request, billing, user, token)
    sessions = billing.list_sessions(user.tenant_id, cursor=cursor, limit=20)
    notices, _ = billing.list_notices(user.tenant_id, limit=10)
    fmt = formatters(locale_of(request))
    chart = usage_chart(billing.usage_by_day(user.tenant_id), billing.now().date(), fmt["short_date"])  # type: ignore[arg-type]
    return page(request, "billing.html", {
        **ctx, "sessions": sessions.data, "notices": notices, "next_cursor": sessions.next_cursor, "cursor": cursor,
        "chart": chart, "done": DONE.get(done or ""), "errors": errors or {}, "values": values or {},
    }, status, headers={"Cache-Control": "no-store"})


@router.get("/billing", response_class=HTMLResponse, summary="The Billing tab")
def billing_tab(request: Request, billing: BillingDep, cursor: str | None = None,
                done: str | None = None) -> Response:
    user, token = signed_in(request, billing)
    if not billing.settings.billing_enabled:
        return page(request, "billing_off.html", {"message": BILLING_OFF})
    return render_tab(request, billing, user, token, cursor=cursor, done=done)

