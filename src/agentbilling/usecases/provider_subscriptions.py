"""The provider's subscription as ours: a checkout that started a plan, and (when the provider
bills) its plan, scheduled change, cancellation and end."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agentbilling.domain import ledger
from agentbilling.domain.invoicing import InvoiceDraft, InvoiceLine
from agentbilling.domain.limits import kept_limit
from agentbilling.domain.periods import add_months, period_at
from agentbilling.domain.plan_change import PlanChange
from agentbilling.domain.plans import Plan
from agentbilling.domain.subscription import TRIAL_COUNTER, Status, Subscription, at, start_plan
from agentbilling.payments.provider import ProviderSubscription
from agentbilling.usecases.invoices import add_invoice
from agentbilling.usecases.paid_plans import PaidPlans
from agentbilling.usecases.renewals import split_at_provider
from agentbilling.usecases.subscriptions import load_for_write, save

log = logging.getLogger(__name__)


def sync_subscription(billing: PaidPlans, conn: Any, ps: ProviderSubscription, now: datetime) -> None:
    """Store the provider's subscription as it is there now."""
    sub, row = load_for_write(billing, conn, ps.tenant_id, now)
    extra: dict[str, Any] = {}
    if row["provider_subscription"] != ps.id:
        if sub.paid and sub.status is Status.ACTIVE:
            log.warning("tenant %s completed a second checkout (%s) while subscribed; ignored", ps.tenant_id, ps.id)
            return
        if ps.status not in ("active", "past_due", "trialing"):
            return  # not started (incomplete) or already over: nothing to start
        plan = billing.catalog.get(ps.plan_id)
        if plan is None:
            log.error("checkout for unknown plan %r ignored", ps.plan_id)
            return
        sub, extra = _started(billing, conn, sub, ps, plan, now)
    if ps.owned:
        sub, owned = _owned_state(billing, conn, sub, ps, now, row)
        extra.update(owned)
    elif sub.status is Status.ACTIVE and sub.anchor is not None:
        # Cancel subscription / resume, as the provider has it now (R11).
        if ps.cancel_requested_at is not None:
            cancel_at = period_at(sub.anchor, ps.cancel_requested_at).end
            if sub.cancel_at != cancel_at:
                sub = dataclasses.replace(sub, cancel_at=cancel_at, pending=None)
        elif sub.cancel_at is not None:
            sub = dataclasses.replace(sub, cancel_at=None)
    save(billing, conn, sub, now, row, **extra)


def _started(billing: PaidPlans, conn: Any, sub: Subscription, ps: ProviderSubscription, plan: Plan,
             now: datetime) -> tuple[Subscription, dict[str, Any]]:
    """A completed checkout starts the plan: its first period's first segment, its first invoice."""
    sub = at(start_plan(sub, plan, ps.started_at, used=billing.book.counter(conn, ps.tenant_id, TRIAL_COUNTER)),
             now)
    first_end = ps.period_end or add_months(ps.started_at, 1)
    extra = {"terms": None, "provider": billing.provider.name, "provider_customer": ps.customer,
             "provider_subscription": ps.id, "billed_until": first_end,
             "previous_plan_id": None, "plan_changed_at": None}
    # The first period's first segment (R8a).
    billing.book.put(conn, ps.tenant_id, ledger.opened(period_at(ps.started_at, ps.started_at), plan,
                                                       ps.started_at, 0))
    fi = ps.first_invoice
    if fi is not None:
        line = InvoiceLine(f"{plan.name} plan, {ps.started_at.date().isoformat()} to "
                           f"{first_end.date().isoformat()}", 1, fi.total, fi.total)
        add_invoice(conn, ps.tenant_id, fi.id, "first", InvoiceDraft(fi.currency, (line,)),
                    ps.started_at, first_end, ps.started_at, ps.id, to_charge=False, paid_at=fi.paid_at)
    return sub, extra


def _owned_state(billing: PaidPlans, conn: Any, sub: Subscription, ps: ProviderSubscription, now: datetime,
                 row: Mapping[str, Any]) -> tuple[Subscription, dict[str, Any]]:
    """The provider's subscription (Stripe's) as ours: its plan, scheduled change, cancellation
    and end; our own derivations (grace, lapse) stay on top."""
    if sub.status is not Status.ACTIVE:
        return sub, {}  # ended here already (unpaid at its period's end, or cancelled)
    extra: dict[str, Any] = {"billed_until": ps.period_end}
    plan = billing.catalog.get(ps.plan_id)
    if plan is not None and sub.plan is not None and plan.id != sub.plan.id:
        split_at_provider(billing, conn, row, sub, plan, now)
        sub = dataclasses.replace(sub, plan=plan, custom_limit=kept_limit(sub.custom_limit, plan))
    pending = None
    if ps.pending is not None and ps.cancel_at is None:
        nxt = billing.catalog.get(ps.pending[0])
        pending = PlanChange(nxt, ps.pending[1]) if nxt is not None else None
    sub = dataclasses.replace(sub, pending=pending, cancel_at=ps.cancel_at)
    if ps.status in ("canceled", "incomplete_expired"):
        # Ended at the provider: cancelled by the tenant (Canceled subscription, R11), or for
        # want of payment (Expired subscription, R10).
        ended = ps.ended_at or now
        status = Status.CANCELED if ps.ended_by_request else Status.EXPIRED
        sub = dataclasses.replace(sub, status=status, ended_at=ended, pending=None,
                                  cancel_at=ended if ps.ended_by_request else sub.cancel_at)
    return sub, extra
