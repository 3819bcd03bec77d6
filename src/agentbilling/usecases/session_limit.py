"""The tenant's own session limit (R9)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from agentbilling.delivery.webhooks_out import emit
from agentbilling.domain.card import session_limit_card
from agentbilling.domain.errors import NotFound, SessionLimitUnavailable
from agentbilling.domain.limits import validate_limit
from agentbilling.domain.plans import Catalog, Plan
from agentbilling.domain.subscription import Subscription
from agentbilling.storage.db import Database
from agentbilling.storage.gate.metering import MeteringStore
from agentbilling.storage.tables import subscriptions


class Subscriptions:
    def __init__(self, db: Database, catalog: Catalog, metering: MeteringStore) -> None:
        self.db = db
        self.catalog = catalog
        self.metering = metering

    def plan(self, plan_id: str) -> Plan:
        plan = self.catalog.get(plan_id)
        if plan is None:
            raise NotFound(f"No plan {plan_id!r}.")
        return plan

    def set_session_limit(self, tenant_id: str, limit: object, now: datetime) -> None:
        sub = self._paid(tenant_id, now)
        assert sub.plan is not None
        value = validate_limit(sub.plan, limit)
        self._store_limit(tenant_id, value, now)

    def reset_session_limit(self, tenant_id: str, now: datetime) -> None:
        self._paid(tenant_id, now)
        self._store_limit(tenant_id, None, now)

    def _paid(self, tenant_id: str, now: datetime) -> Subscription:
        sub, st, used = self.metering.standing_and_usage(tenant_id, now)
        if session_limit_card(sub, st, used) is None:
            raise SessionLimitUnavailable("The session limit is available on paid plans, not on the free trial.")
        return sub

    def _store_limit(self, tenant_id: str, value: int | None, now: datetime) -> None:
        with self.db.write() as conn:
            conn.execute(
                update(subscriptions)
                .where(subscriptions.c.tenant_id == tenant_id)
                .values(custom_limit=value, updated_at=now)
            )
            emit(conn, tenant_id, "session_limit.updated", {"session_limit": value}, now)

