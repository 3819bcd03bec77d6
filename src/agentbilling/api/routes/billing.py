"""Billing routes: what the Billing tab shows and does, for owners and admins (R13)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from agentbilling.api.deps import BillingDep, BillingUser
from agentbilling.api.responses import (
    BillingOut,
    CheckoutOut,
    DemoRequestReceived,
    InvoiceOut,
    InvoicesPage,
    NoticesPage,
    SessionLimitAnswer,
    SessionsPage,
    UrlOut,
)
from agentbilling.api.schemas import (
    CheckoutIn,
    DemoRequestIn,
    PlanChangeIn,
    SessionLimitIn,
    billing_json,
    invoice_json,
    limit_json,
    notice_json,
    session_json,
)

REQUEST_RECEIVED = "Request received"


def base_url(request: Request, billing: BillingDep) -> str:
    """Where the links handed out point: AGENTBILLING_PUBLIC_URL, else the address asked for."""
    return billing.public_url(str(request.base_url))

router = APIRouter(prefix="/v1/billing", tags=["billing"])


@router.get("", response_model=BillingOut,
            summary="Everything the Billing tab shows: cards, banners, session limit, plans")
def get_billing(user: BillingUser, billing: BillingDep) -> dict[str, Any]:
    return billing_json(billing.billing_view(user.tenant_id))


@router.put("/session-limit", response_model=SessionLimitAnswer,
            summary="Set limit: cap billable sessions per billing period (paid plans)")
def set_session_limit(body: SessionLimitIn, user: BillingUser, billing: BillingDep) -> dict[str, Any]:
    return {"session_limit": limit_json(billing.set_session_limit(user.tenant_id, body.limit))}


@router.delete("/session-limit", response_model=SessionLimitAnswer,
               summary="Reset limit: back to the plan's base limit")
def reset_session_limit(user: BillingUser, billing: BillingDep) -> dict[str, Any]:
    return {"session_limit": limit_json(billing.reset_session_limit(user.tenant_id))}


@router.get("/sessions", response_model=SessionsPage,
            summary="Sessions with their billable sessions, newest first (cursor pages)")
def list_sessions(
    user: BillingUser,
    billing: BillingDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    page = billing.list_sessions(user.tenant_id, cursor=cursor, limit=limit)
    return {"data": [session_json(s) for s in page.data], "next_cursor": page.next_cursor}


@router.post("/checkout", response_model=CheckoutOut,
             summary="Subscribe: a checkout for a plan in the secure billing portal")
def checkout(body: CheckoutIn, request: Request, user: BillingUser, billing: BillingDep) -> dict[str, Any]:
    co = billing.checkout(user.tenant_id, body.plan_id, base_url=base_url(request, billing))
    return {"id": co.id, "url": co.url}


@router.post("/portal", response_model=UrlOut,
             summary="Manage: the secure billing portal (payment methods, invoices, Cancel subscription)")
def portal(request: Request, user: BillingUser, billing: BillingDep) -> dict[str, Any]:
    return {"url": billing.portal_url(user.tenant_id, base_url=base_url(request, billing), user_id=user.id)}


@router.post("/plan-change", response_model=BillingOut,
             summary="Change plan: Immediately, End of the current period or On custom date")
def change_plan(body: PlanChangeIn, user: BillingUser, billing: BillingDep) -> dict[str, Any]:
    return billing_json(billing.change_plan(user.tenant_id, body.plan_id, body.when, body.date))


@router.delete("/plan-change", response_model=BillingOut, summary="Cancel scheduled plan")
def cancel_plan_change(user: BillingUser, billing: BillingDep) -> dict[str, Any]:
    return billing_json(billing.cancel_plan_change(user.tenant_id))


@router.post("/demo-requests", status_code=201, response_model=DemoRequestReceived,
             summary="Book a demo of an Enterprise plan")
def request_demo(body: DemoRequestIn, user: BillingUser, billing: BillingDep) -> dict[str, Any]:
    req = billing.request_demo(user.tenant_id, body.plan_id, user_id=user.id, message=body.message)
    return {"id": req.id, "status": REQUEST_RECEIVED}


@router.get("/invoices", response_model=InvoicesPage, summary="Invoices, newest first (cursor pages)")
def list_invoices(
    user: BillingUser,
    billing: BillingDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    data, nxt = billing.invoices(user.tenant_id, cursor=cursor, limit=limit)
    return {"data": [invoice_json(i) for i in data], "next_cursor": nxt}


@router.get("/invoices/{invoice_id}", response_model=InvoiceOut, summary="One invoice")
def get_invoice(invoice_id: str, user: BillingUser, billing: BillingDep) -> dict[str, Any]:
    return invoice_json(billing.invoice(user.tenant_id, invoice_id))


@router.get("/notices", response_model=NoticesPage,
            summary="Notices (R14): reminders, warnings and what happened, newest first (cursor pages)")
def list_notices(
    user: BillingUser,
    billing: BillingDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    data, nxt = billing.list_notices(user.tenant_id, cursor=cursor, limit=limit)
    return {"data": [notice_json(n) for n in data], "next_cursor": nxt}
