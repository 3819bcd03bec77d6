"""Book a demo: a request for an Enterprise plan, and the list of requests for the team."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import datetime

from sqlalchemy import insert, select

from agentbilling.domain.errors import InvalidInput
from agentbilling.storage.tables import demo_requests
from agentbilling.usecases.cursors import newest_first
from agentbilling.usecases.paid_plans import PaidPlans
from agentbilling.usecases.results import DemoRequest
from agentbilling.usecases.subscriptions import offered


def request_demo(billing: PaidPlans, tenant_id: str, plan_id: object, user_id: str | None, message: object,
                 now: datetime) -> DemoRequest:
    plan = offered(billing, tenant_id, plan_id)
    if not plan.enterprise:
        raise InvalidInput(f"Book a demo is for Enterprise plans; subscribe to {plan.name} instead.")
    if message is not None and (not isinstance(message, str) or len(message) > 2000):
        raise InvalidInput("message must be text of at most 2,000 characters.")
    req = DemoRequest("demo_" + secrets.token_hex(10), tenant_id, plan.id, user_id, message or None, now)
    with billing.db.write() as conn:
        conn.execute(insert(demo_requests).values(dataclasses.asdict(req)))
    return req


def list_demo_requests(billing: PaidPlans, cursor: str | None, limit: int) -> tuple[list[DemoRequest], str | None]:
    return newest_first(billing.db, select(demo_requests), demo_requests.c.created_at, demo_requests.c.id, cursor,
                        limit, lambda r: DemoRequest(**r._mapping), lambda d: (d.created_at, d.id))
