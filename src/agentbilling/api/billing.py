"""Billing routes: what the Billing tab shows and does, for owners and admins (R13)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from agentbilling.api.deps import BillingDep, BillingUser
from agentbilling.api.schemas import SessionLimitIn, billing_json, limit_json, session_json

router = APIRouter(prefix="/v1/billing", tags=["billing"])


@router.get("", summary="Everything the Billing tab shows: cards, banners, session limit, plans")
def get_billing(user: BillingUser, billing: BillingDep) -> dict[str, Any]:
    return billing_json(billing.billing_view(user.tenant_id))


@router.put("/session-limit", summary="Set limit: cap billable sessions per billing period (paid plans)")
def set_session_limit(body: SessionLimitIn, user: BillingUser, billing: BillingDep) -> dict[str, Any]:
    return {"session_limit": limit_json(billing.set_session_limit(user.tenant_id, body.limit))}


@router.delete("/session-limit", summary="Reset limit: back to the plan's base limit")
def reset_session_limit(user: BillingUser, billing: BillingDep) -> dict[str, Any]:
    return {"session_limit": limit_json(billing.reset_session_limit(user.tenant_id))}


@router.get("/sessions", summary="Sessions with their billable sessions, newest first (cursor pages)")
def list_sessions(
    user: BillingUser,
    billing: BillingDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    page = billing.list_sessions(user.tenant_id, cursor=cursor, limit=limit)
    return {"data": [session_json(s) for s in page.data], "next_cursor": page.next_cursor}
