"""Rows to domain objects and back, shared by the raw hot path and the SQLAlchemy queries."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from agentbilling.domain.metering import Direction, Session
from agentbilling.domain.money import Money
from agentbilling.domain.plan_change import PlanChange
from agentbilling.domain.plans import Catalog, Plan, Terms
from agentbilling.domain.subscription import Status, Subscription
from agentbilling.domain.trial import Trial

log = logging.getLogger(__name__)

SUBSCRIPTION_COLUMNS = (
    "status", "plan_id", "terms", "anchor_at", "trial_started_at", "trial_ends_at", "trial_sessions", "custom_limit",
    "pending_plan_id", "pending_at", "cancel_at", "payment_failed_at", "grace_ends_at", "ended_at", "offline",
)
SESSION_COLUMNS = (
    "id", "agent_id", "direction", "answered_only", "started_at", "last_activity_at", "answered_at", "ended_at",
    "billable_sessions",
)

DateIn = Callable[[Any], datetime | None]


def _money(raw: dict[str, Any] | None) -> Money | None:
    return Money(raw["amount"], raw["currency"]) if raw else None


def terms_from_json(raw: Any) -> Terms | None:
    if raw is None:
        return None
    data = json.loads(raw) if isinstance(raw, str) else raw
    if not data:
        return None
    return Terms(
        price=_money(data.get("price")),
        included_sessions=data.get("included_sessions"),
        overage_price=_money(data.get("overage_price")),
        base_session_limit=data.get("base_session_limit"),
        max_session_limit=data.get("max_session_limit"),
    )


def terms_to_json(terms: Terms | None) -> dict[str, Any] | None:
    if terms is None:
        return None

    def money(m: Money | None) -> dict[str, Any] | None:
        return {"amount": m.amount, "currency": m.currency} if m else None

    out = {
        "price": money(terms.price),
        "included_sessions": terms.included_sessions,
        "overage_price": money(terms.overage_price),
        "base_session_limit": terms.base_session_limit,
        "max_session_limit": terms.max_session_limit,
    }
    return {k: v for k, v in out.items() if v is not None}


def _plan(catalog: Catalog, plan_id: str) -> Plan:
    plan = catalog.get(plan_id)
    if plan is None:
        # The operator removed a plan tenants are still on: keep them running, uncapped.
        log.warning("plan %r is not in the catalog; treating it as an uncapped plan", plan_id)
        plan = Plan(id=plan_id, name=plan_id, price=None)
    return plan


def subscription_from_row(tenant_id: str, row: Sequence[Any], catalog: Catalog, dt: DateIn) -> Subscription:
    (status, plan_id, terms, anchor_at, trial_started_at, trial_ends_at, trial_sessions, custom_limit,
     pending_plan_id, pending_at, cancel_at, payment_failed_at, grace_ends_at, ended_at, offline) = row
    plan = _plan(catalog, plan_id).with_terms(terms_from_json(terms)) if plan_id else None
    pending = PlanChange(_plan(catalog, pending_plan_id), dt(pending_at)) if pending_plan_id else None
    return Subscription(
        tenant_id=tenant_id,
        status=Status(status),
        trial=Trial(started_at=dt(trial_started_at), ends_at=dt(trial_ends_at), sessions=trial_sessions),
        plan=plan,
        anchor=dt(anchor_at),
        custom_limit=custom_limit,
        pending=pending,
        cancel_at=dt(cancel_at),
        payment_failed_at=dt(payment_failed_at),
        grace_ends_at=dt(grace_ends_at),
        ended_at=dt(ended_at),
        offline=bool(offline),
    )


def session_from_row(row: Sequence[Any], dt: DateIn) -> Session:
    sid, agent_id, direction, answered_only, started, last, answered, ended, units = row
    return Session(
        id=sid,
        agent_id=agent_id,
        direction=Direction(direction),
        answered_only=bool(answered_only),
        started_at=dt(started),
        last_activity_at=dt(last),
        answered_at=dt(answered),
        ended_at=dt(ended),
        billable_sessions=units,
    )


def same(value: Any) -> Any:
    return value
