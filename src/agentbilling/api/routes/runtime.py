"""Agent runtime routes: open a session (the gate), messages, end, read, and the admission state."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from agentbilling.api.deps import BillingDep, TenantId, bearer_of, invalid_key
from agentbilling.api.gate.group_commit import GroupCommit
from agentbilling.api.problems import Problem
from agentbilling.api.responses import AdmissionOut, AdmittedOut, SessionOut
from agentbilling.api.schemas import MessageIn, OpenSessionIn, admission_json, admitted_json, session_json
from agentbilling.client import Billing
from agentbilling.domain.gate import AdmissionRequest

router = APIRouter(prefix="/v1", tags=["agent runtime"])


def _admission_threads(state: Any, billing: Billing) -> anyio.CapacityLimiter:
    """Admissions run on a few threads of their own (settings.admission_threads) rather than on the
    40 of the default pool: they serialise in the database anyway (SQLite's write lock, PostgreSQL's
    counter row), and many threads fighting over the GIL only lengthen the tail."""
    limiter = getattr(state, "admission_threads", None)
    if limiter is None:
        limiter = state.admission_threads = anyio.CapacityLimiter(billing.settings.admission_threads)
    return limiter


def _group_commit(state: Any, billing: Billing) -> GroupCommit:
    """Admissions under one key that arrive together share a transaction (api/gate/group_commit.py).
    On PostgreSQL the common case (new ids of a tenant whose standing is kept) is one statement
    on the event loop's own connections (`state.gate_pool`): no hop to a thread and back, which
    on a busy single core costs more than the statement. Anything else runs on the admission
    threads."""
    batches = getattr(state, "group_commit", None)
    if batches is None:
        batches = state.group_commit = GroupCommit(partial(decide_batch, state, billing))
    return batches


async def decide_batch(state: Any, billing: Billing, key: str, requests: Sequence[AdmissionRequest]) -> Sequence[Any]:
    """The answers to a batch of admissions under one key: on the event loop when one statement
    can decide them all, else in a transaction on an admission thread."""
    pool = getattr(state, "gate_pool", None)
    if pool is not None:
        answers = await billing.open_sessions_async(pool, key, requests)
        if answers is not None:
            return answers
    return await anyio.to_thread.run_sync(partial(billing.open_sessions_for_key, key, requests),
                                          limiter=_admission_threads(state, billing))


async def admit(state: Any, authorization: str, raw_body: bytes) -> Response:
    """POST /v1/sessions from its Authorization header and body bytes: validates the body in
    pydantic-core straight from bytes, then the key check and the admission in one transaction,
    shared with the other admissions under the same key that arrive meanwhile (group commit).
    Errors are raised as everywhere else."""
    key = bearer_of(authorization)
    if key is None:
        raise invalid_key()
    try:
        body = OpenSessionIn.model_validate_json(raw_body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_url=False)]
        ) from None
    billing: Billing = state.billing
    request = billing.admission_request(body.id, body.agent_id, body.direction)
    result = await _group_commit(state, billing).admit(key, request)
    if result is None:
        raise invalid_key()
    if result.refusal is not None:
        raise Problem.refused(result.refusal)
    assert result.session is not None
    return Response(json.dumps(admitted_json(result.session), separators=(",", ":")).encode(),
                    status_code=200 if result.replay else 201, media_type="application/json")


REFUSED = {402: {"description": "Not admitted: the R4 reason in `type` and its message in `detail`",
                 "content": {"application/problem+json": {}}}}


_OPEN_BODY = {
    "required": True,
    "content": {"application/json": {"schema": OpenSessionIn.model_json_schema(by_alias=True)}},
}


@router.post("/sessions", status_code=201, response_model=AdmittedOut,
             responses={200: {"description": "The same id again: the first answer", "model": AdmittedOut},
                        **REFUSED},
             openapi_extra={"requestBody": _OPEN_BODY},
             summary="Ask to open a session: admitted (201), a replay (200), or refused (402)")
async def open_session(request: Request) -> Response:
    # Most requests never get here: api/gate/fast_admission.py answers them with the same `admit`
    # before the framework's routing. This route documents the endpoint and serves the rest
    # (those with an Idempotency-Key, which the idempotency middleware wraps).
    return await admit(request.app.state, request.headers.get("authorization", ""), await request.body())


@router.post("/sessions/{session_id:path}/messages", response_model=SessionOut,
             summary="A message in a session, from the customer or the agent")
def record_message(session_id: str, body: MessageIn, tenant_id: TenantId, billing: BillingDep) -> dict[str, Any]:
    return session_json(billing.record_message(tenant_id, session_id, body.from_))


@router.post("/sessions/{session_id:path}/end", response_model=SessionOut,
             summary="End a session (adds nothing to its billable sessions)")
def end_session(session_id: str, tenant_id: TenantId, billing: BillingDep) -> dict[str, Any]:
    return session_json(billing.end_session(tenant_id, session_id))


@router.get("/sessions/{session_id:path}", response_model=SessionOut, summary="A session and its billable sessions")
def get_session(session_id: str, tenant_id: TenantId, billing: BillingDep) -> dict[str, Any]:
    return session_json(billing.get_session(tenant_id, session_id))


@router.get("/admission", response_model=AdmissionOut, summary="Whether agents may start new sessions now, and why not")
def admission(tenant_id: TenantId, billing: BillingDep) -> dict[str, Any]:
    return admission_json(billing.admission(tenant_id))
