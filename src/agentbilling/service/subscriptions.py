"""Putting a tenant on a plan without the portal, and the tenant's own session limit (R9)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from agentbilling.domain.errors import InvalidInput, NotFound, SessionLimitUnavailable
from agentbilling.domain.card import session_limit_card
from agentbilling.domain.limits import kept_limit, validate_limit
from agentbilling.domain.plans import Catalog, Plan, Terms
from agentbilling.domain.subscription import Event, Subscription, transition
from agentbilling.storage.db import Database
from agentbilling.storage.metering import MeteringStore
from agentbilling.storage.rows import terms_to_json
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

    def put_on_plan(self, tenant_id: str, plan_id: str, terms: Terms | None, now: datetime) -> None:
        """An offline deal: monthly periods from now, renewed without the provider; ends a trial."""
        plan = self.plan(plan_id).with_terms(terms)
        base, top = plan.base_session_limit, plan.max_session_limit
        if any(v is not None and v <= 0 for v in (base, top)):
            raise InvalidInput("Session limits must be greater than zero.")
        if base is not None and top is not None and base > top:
            raise InvalidInput("The base session limit cannot be above the highest session limit.")
        sub, st, used = self.metering.standing_and_usage(tenant_id, now)
        status = transition(st.status_with(used), Event.PLAN_STARTED)
        with self.db.write() as conn:
            conn.execute(
                update(subscriptions)
                .where(subscriptions.c.tenant_id == tenant_id)
                .values(status=status.value, plan_id=plan_id, terms=terms_to_json(terms), anchor_at=now,
                        custom_limit=kept_limit(sub.custom_limit if sub.plan else None, plan), updated_at=now)
            )

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

