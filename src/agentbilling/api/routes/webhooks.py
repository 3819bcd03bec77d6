"""Provider webhooks: the signature is checked on the raw body, the event stored, then applied once."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from agentbilling.api.deps import BillingDep
from agentbilling.api.problems import Problem
from agentbilling.api.responses import StatusOut
from agentbilling.payments.provider import WebhookRejected

router = APIRouter(tags=["webhooks"])


@router.post("/v1/webhooks/{provider}", response_model=StatusOut, summary="A payment provider's signed event")
async def receive(provider: str, request: Request, billing: BillingDep) -> dict[str, Any]:
    body = await request.body()
    headers = dict(request.headers)
    try:
        outcome = await run_in_threadpool(billing.receive_webhook, provider, body, headers)
    except WebhookRejected as err:
        raise Problem(400, "invalid-signature", f"The webhook was not accepted: {err}.") from None
    return {"status": outcome}
