"""The subscription row: read under its lock, taken to `now` with what time did to it stored first,
and written back whole (with its notices and webhooks) only when something changed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import RowMapping, select, update

from agentbilling.delivery.webhooks_out import emit, subscription_data
from agentbilling.domain.errors import InvalidInput, NotFound
from agentbilling.domain.notices import event_notices
from agentbilling.domain.plans import Plan
from agentbilling.domain.subscription import Subscription, at, with_payment_failed
from agentbilling.storage.repositories.subscriptions import save_subscription
from agentbilling.storage.rows import SUBSCRIPTION_COLUMNS, subscription_from_row
from agentbilling.storage.tables import invoices, subscriptions
from agentbilling.usecases import notices
from agentbilling.usecases.paid_plans import PaidPlans

US = timedelta(microseconds=1)  # the last moment before a boundary is one microsecond before it


def locked_row(conn: Any, tenant_id: str) -> Mapping[str, Any]:
    """The tenant's subscription row, locked (FOR UPDATE on PostgreSQL)."""
    row: Mapping[str, Any] | None = conn.execute(select(subscriptions).where(subscriptions.c.tenant_id == tenant_id)
                                                 .with_for_update()).mappings().first()
    if row is None:
        raise NotFound(f"No tenant {tenant_id!r}.")
    return row


def load(billing: PaidPlans, conn: Any, tenant_id: str, now: datetime) -> tuple[Subscription, Mapping[str, Any]]:
    row = locked_row(conn, tenant_id)
    return at(stored(billing, row), now), row


def load_for_write(billing: PaidPlans, conn: Any, tenant_id: str,
                   now: datetime) -> tuple[Subscription, Mapping[str, Any]]:
    """`load` in a write: what time did to the plan is stored first, step by step with its
    invoices (the billing mode's `catch_up`), so that whatever this write changes next starts from it."""
    sub, row = load(billing, conn, tenant_id, now)
    caught, extra = billing.mode.catch_up(billing, conn, row, now)
    if save(billing, conn, caught, now, row, **extra):
        row = locked_row(conn, tenant_id)
        sub = at(stored(billing, row), now)
    return sub, row


def stored(billing: PaidPlans, row: Mapping[str, Any] | RowMapping) -> Subscription:
    """The subscription a row stores (a RowMapping's keys may be columns too: not a Mapping[str, Any])."""
    return subscription_from_row(row["tenant_id"], [row[c] for c in SUBSCRIPTION_COLUMNS], billing.catalog,
                                 lambda v: v)


def save(billing: PaidPlans, conn: Any, sub: Subscription, now: datetime, row: Mapping[str, Any],
         **extra: Any) -> bool:
    """Write `sub` over the stored `row`; nothing when nothing changed (so that the gate's kept
    standing, checked against the row's revision, stays valid): whether it wrote. A plan that
    changed is remembered with the moment it changed."""
    values: dict[str, Any] = {
        "status": sub.status.value, "plan_id": sub.plan.id if sub.plan else None, "anchor_at": sub.anchor,
        "custom_limit": sub.custom_limit, "pending_plan_id": sub.pending.plan.id if sub.pending else None,
        "pending_at": sub.pending.effective_at if sub.pending else None, "cancel_at": sub.cancel_at,
        "payment_failed_at": sub.payment_failed_at, "grace_ends_at": sub.grace_ends_at,
        "ended_at": sub.ended_at, "offline": sub.offline,
    }
    old_plan, new_plan = row["plan_id"], values["plan_id"]
    if old_plan and new_plan and old_plan != new_plan and "previous_plan_id" not in extra:
        came_due = row["pending_plan_id"] == new_plan and row["pending_at"] is not None and row["pending_at"] <= now
        changed_at = row["pending_at"] if came_due else now
        values.update(previous_plan_id=old_plan, plan_changed_at=changed_at)
    values.update(extra)
    if all(row[k] == v for k, v in values.items()):
        return False
    billing.mode.plan_ended(billing, conn, row, sub, now)
    notices.record(conn, sub.tenant_id, event_notices(stored(billing, row), sub, now), now)
    emit(conn, sub.tenant_id, "subscription.updated", {"subscription": subscription_data(sub)}, now)
    save_subscription(conn, sub.tenant_id, values, now)
    return True


def with_payment_state(billing: PaidPlans, conn: Any, sub: Subscription,
                       provider_subscription: str | None) -> Subscription:
    """Payment issue while an invoice of the running plan is unpaid after a failed charge (R10)."""
    c = invoices.c
    oldest = conn.execute(select(c.first_failed_at).where(
        c.tenant_id == sub.tenant_id, c.status == "open", c.first_failed_at.is_not(None),
        c.provider_subscription == provider_subscription).order_by(c.first_failed_at).limit(1)).scalar()
    return with_payment_failed(sub, oldest, billing.grace)


def stop_retries(conn: Any, tenant_id: str) -> None:
    """The plan they were for was replaced: its open invoices stay owed (past due) but are no
    longer charged by themselves; a new card or a payment in the portal settles them."""
    c = invoices.c
    conn.execute(update(invoices).where(c.tenant_id == tenant_id, c.status == "open").values(next_attempt_at=None))


def offered(billing: PaidPlans, tenant_id: str, plan_id: object) -> Plan:
    """The plan `plan_id` names, if the tenant may take it."""
    if not isinstance(plan_id, str) or not plan_id:
        raise InvalidInput("plan_id must be the id of a plan.")
    plan = billing.catalog.get(plan_id)
    if plan is None or not plan.available_for(tenant_id):
        raise NotFound(f"No plan {plan_id!r}.")
    return plan
