"""The Billing tab's forms: Subscribe, Manage, Apply subscription updates, Cancel scheduled plan,
Set limit and Reset limit, Book a demo."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from agentbilling.api.deps import BillingDep
from agentbilling.api.routes.billing import base_url
from agentbilling.client import Billing
from agentbilling.domain.errors import DomainError
from agentbilling.usecases.results import User
from agentbilling.web.rendering import page
from agentbilling.web.tab import (
    CsrfField,
    PageRefused,
    back_to_tab,
    form_user,
    render_tab,
    signed_in,
    status_of,
    tab_context,
)

router = APIRouter(tags=["billing tab"])

Text = Annotated[str, Form()]
NO_SCHEDULED_PLAN = "There is no scheduled plan change to cancel."


def _form_page(request: Request, billing: Billing, user: User, token: str, form: str, *, plan_id: str | None = None,
               error: str | None = None, status: int = 200, values: dict[str, str] | None = None) -> Response:
    """A dialog of the tab as a page of its own (the GET routes here), so every action works without JavaScript.

    With JavaScript the same form opens as a dialog on the tab. A refused form shows again with why and
    the status of the refusal; nothing is changed."""
    ctx = tab_context(request, billing, user, token)
    plan = next((p for p in ctx["view"].plans if p.id == plan_id), None) if plan_id else None
    if plan_id is not None and plan is None:
        raise PageRefused(404, f"There is no plan {plan_id!r} for you.")
    return page(request, "billing_form.html", {**ctx, "form": form, "plan": plan, "error": error,
                                                "values": values or {}}, status)


# -- Subscribe and Manage: the secure billing portal, in a new tab --------------------------------

@router.post("/billing/checkout", summary="Subscribe: opens the plan's checkout in the secure billing portal")
def subscribe(request: Request, billing: BillingDep, plan_id: Text = "", csrf: CsrfField = "") -> Response:
    user, _ = form_user(request, billing, csrf)
    try:
        co = billing.checkout(user.tenant_id, plan_id, base_url=base_url(request, billing))
    except DomainError as err:
        return page(request, "billing_message.html", {"heading": "Subscribe", "message": err.detail,
                                                      "back": True}, status_of(err))
    return RedirectResponse(co.url, status_code=303)


@router.post("/billing/manage", summary="Manage: opens the secure billing portal")
def manage(request: Request, billing: BillingDep, csrf: CsrfField = "") -> Response:
    user, _ = form_user(request, billing, csrf)
    try:
        url = billing.portal_url(user.tenant_id, base_url=base_url(request, billing), user_id=user.id)
    except DomainError as err:
        return page(request, "billing_message.html", {"heading": "Manage", "message": err.detail, "back": True},
                    status_of(err))
    return RedirectResponse(url, status_code=303)


# -- Apply subscription updates and Cancel scheduled plan ---------------------------------------------

@router.get("/billing/plans/{plan_id}/change", response_class=HTMLResponse,
            summary="Apply subscription updates, as a page (the tab opens it as a dialog)")
def change_page(plan_id: str, request: Request, billing: BillingDep) -> Response:
    user, token = signed_in(request, billing)
    return _form_page(request, billing, user, token, "change", plan_id=plan_id)


@router.post("/billing/plan-change", summary="Update subscription: Immediately, End of the current period or "
             "On custom date")
def change_plan(request: Request, billing: BillingDep, plan_id: Text = "", when: Text = "", date: Text = "",
                csrf: CsrfField = "") -> Response:
    user, token = form_user(request, billing, csrf)
    try:
        billing.change_plan(user.tenant_id, plan_id, when, date or None)
    except DomainError as err:
        return _form_page(request, billing, user, token, "change", plan_id=plan_id or None, error=err.detail,
                          status=status_of(err), values={"when": when, "date": date})
    return back_to_tab("plan-change")


@router.get("/billing/scheduled-plan/cancel", response_class=HTMLResponse,
            summary="Cancel scheduled plan, as a page (the tab opens it as a dialog)")
def cancel_change_page(request: Request, billing: BillingDep) -> Response:
    user, token = signed_in(request, billing)
    return _form_page(request, billing, user, token, "cancel-scheduled")


@router.post("/billing/scheduled-plan/cancel", summary="Cancel scheduled plan")
def cancel_change(request: Request, billing: BillingDep, csrf: CsrfField = "") -> Response:
    user, token = form_user(request, billing, csrf)
    try:
        billing.cancel_plan_change(user.tenant_id)
    except DomainError as err:
        return _form_page(request, billing, user, token, "cancel-scheduled", error=err.detail,
                          status=status_of(err))
    return back_to_tab("plan-change-canceled")


# -- Session limit -----------------------------------------------------------------------------------

_WHOLE_NUMBER = re.compile(r"[0-9]{1,12}")  # ASCII digits only: `²` and `①` are digits to str.isdigit


def _limit_value(raw: str) -> object:
    text = raw.strip()
    return int(text) if _WHOLE_NUMBER.fullmatch(text) else text  # anything else is refused by the rule's own check


@router.post("/billing/session-limit", summary="Set limit")
def set_limit(request: Request, billing: BillingDep, limit: Text = "", csrf: CsrfField = "") -> Response:
    user, token = form_user(request, billing, csrf)
    try:
        billing.set_session_limit(user.tenant_id, _limit_value(limit))
    except DomainError as err:
        return render_tab(request, billing, user, token, status=status_of(err), errors={"limit": err.detail},
                          values={"limit": limit})
    return back_to_tab("limit-set", "#session-limit")


@router.post("/billing/session-limit/reset", summary="Reset limit: back to the plan's base limit")
def reset_limit(request: Request, billing: BillingDep, csrf: CsrfField = "") -> Response:
    user, token = form_user(request, billing, csrf)
    try:
        billing.reset_session_limit(user.tenant_id)
    except DomainError as err:
        return render_tab(request, billing, user, token, status=status_of(err), errors={"limit": err.detail})
    return back_to_tab("limit-reset", "#session-limit")


# -- Book a demo ---------------------------------------------------------------------------------------

@router.get("/billing/plans/{plan_id}/demo", response_class=HTMLResponse,
            summary="Book a demo, as a page (the tab opens it as a dialog)")
def demo_page(plan_id: str, request: Request, billing: BillingDep) -> Response:
    user, token = signed_in(request, billing)
    return _form_page(request, billing, user, token, "demo", plan_id=plan_id)


@router.post("/billing/demo-requests", summary="Book a demo: records the request; the tab says Request received")
def book_demo(request: Request, billing: BillingDep, plan_id: Text = "", message: Text = "",
              csrf: CsrfField = "") -> Response:
    user, token = form_user(request, billing, csrf)
    try:
        billing.request_demo(user.tenant_id, plan_id, user_id=user.id, message=message.strip() or None)
    except DomainError as err:
        return _form_page(request, billing, user, token, "demo", plan_id=plan_id or None, error=err.detail,
                          status=status_of(err), values={"message": message})
    return back_to_tab("demo", "#plans")
