"""Agent runtime routes: open a session (the gate), messages, end, read, and the admission state."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from agentbilling.api.deps import BillingDep, TenantId
from agentbilling.api.problems import Problem
from agentbilling.api.schemas import MessageIn, OpenSessionIn, admission_json, admitted_json, session_json

router = APIRouter(prefix="/v1", tags=["agent runtime"])

REFUSED = {402: {"description": "Not admitted: the R4 reason in `type` and its message in `detail`",
                 "content": {"application/problem+json": {}}}}


@router.post("/sessions", status_code=201, responses={200: {"description": "The same id again: the first answer"},
                                                      **REFUSED},
             summary="Ask to open a session: admitted (201), a replay (200), or refused (402)")
def open_session(body: OpenSessionIn, tenant_id: TenantId, billing: BillingDep) -> JSONResponse:
    result = billing.open_session(tenant_id, body.id, agent_id=body.agent_id, direction=body.direction)
    if result.refusal is not None:
        raise Problem.refused(result.refusal)
    assert result.session is not None
    return JSONResponse(admitted_json(result.session), status_code=200 if result.replay else 201)


@router.post("/sessions/{session_id:path}/messages", summary="A message in a session, from the customer or the agent")
def record_message(session_id: str, body: MessageIn, tenant_id: TenantId, billing: BillingDep) -> dict[str, Any]:
    return session_json(billing.record_message(tenant_id, session_id, body.from_))


@router.post("/sessions/{session_id:path}/end", summary="End a session (adds nothing to its billable sessions)")
def end_session(session_id: str, tenant_id: TenantId, billing: BillingDep) -> dict[str, Any]:
    return session_json(billing.end_session(tenant_id, session_id))


@router.get("/sessions/{session_id:path}", summary="A session and its billable sessions")
def get_session(session_id: str, tenant_id: TenantId, billing: BillingDep) -> dict[str, Any]:
    return session_json(billing.get_session(tenant_id, session_id))


@router.get("/admission", summary="Whether agents may start new sessions now, and why not")
def admission(tenant_id: TenantId, billing: BillingDep) -> dict[str, Any]:
    return admission_json(billing.admission(tenant_id))
