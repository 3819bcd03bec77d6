"""What comes due as time passes: each pass of the worker applies it (`run_due`), counts it and
says when the next thing falls due."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select, update

from agentbilling.domain.errors import NotFound
from agentbilling.domain.subscription import Status
from agentbilling.storage.tables import invoices, subscriptions
from agentbilling.usecases.paid_plans import PaidPlans
from agentbilling.usecases.provider_commands import run_commands
from agentbilling.usecases.subscriptions import load_for_write, stored


def run_due(billing: PaidPlans, now: datetime) -> int:
    """Apply everything due by `now`: deliver the provider's pending events, store what time did
    to each subscription, renew the periods that began, and charge the invoices due. Returns
    how many subscriptions had something due."""
    billing.provider.deliver_pending()
    c = subscriptions.c
    with billing.db.read() as conn:
        # A payment failure adds nothing due of its own: its retries are the invoices' (`collect`),
        # and the lapse it brings falls at the end of the period, which `billed_until` marks (R10).
        tenants = conn.execute(select(c.tenant_id).where(c.status == Status.ACTIVE.value, or_(
            c.pending_at <= now, c.cancel_at <= now, c.billed_until <= now,
        ))).scalars().all()
    for tenant_id in tenants:
        _advance_tenant(billing, tenant_id, now)
    run_commands(billing, now)
    billing.mode.end_lapsed(billing)
    billing.mode.collect(billing, now)
    return len(tenants)


def due_count(billing: PaidPlans, now: datetime) -> int:
    """Subscriptions with something time has made due and no worker has written yet."""
    c = subscriptions.c
    with billing.db.read() as conn:
        renewals = billing.mode.renewals_due(now)  # Stripe renews its own
        return conn.execute(select(func.count()).select_from(subscriptions).where(
            c.status == Status.ACTIVE.value, or_(c.pending_at <= now, c.cancel_at <= now, renewals))).scalar() or 0


def _advance_tenant(billing: PaidPlans, tenant_id: str, now: datetime) -> None:
    """Store what time did to one subscription: its steps with their invoices (renewals.catch_up)."""
    with billing.db.write() as conn:
        try:
            load_for_write(billing, conn, tenant_id, now)
        except NotFound:
            return


def end_lapsed_at_provider(billing: PaidPlans) -> None:
    """A plan that ended unpaid (R10) is ended at a provider that renews by itself, so that it
    stops charging; once (billed_until is cleared when done)."""
    c = subscriptions.c
    with billing.db.read() as conn:
        lapsed = conn.execute(select(c.tenant_id, c.provider_subscription, c.ended_at).where(
            c.status == Status.EXPIRED.value, c.provider == billing.provider.name,
            c.provider_subscription.is_not(None), c.billed_until.is_not(None))).all()
    for tenant_id, provider_subscription, ended_at in lapsed:
        billing.provider.end_now(provider_subscription)
        if ended_at is not None:  # a renewal made at or after the lapse is for a period it never ran
            billing.provider.void_renewals_since(provider_subscription, ended_at)
        with billing.db.write() as conn:
            conn.execute(update(subscriptions).where(c.tenant_id == tenant_id).values(billed_until=None))


def next_due(billing: PaidPlans, after: datetime) -> datetime | None:
    """The earliest moment after `after` at which `run_due` has something to do."""
    c = subscriptions.c
    moments: list[datetime] = []
    with billing.db.read() as conn:
        rows = conn.execute(select(subscriptions).where(c.status == Status.ACTIVE.value)).mappings().all()
        for row in rows:
            sub = stored(billing, row)
            candidates = [sub.pending.effective_at if sub.pending else None, sub.cancel_at, sub.lapses_at(),
                          sub.grace_ends_at, row["billed_until"] if row["provider"] else None]
            moments += [m for m in candidates if m is not None and m > after]
        nxt = conn.execute(select(invoices.c.next_attempt_at).where(
            invoices.c.status == "open", invoices.c.next_attempt_at > after)
            .order_by(invoices.c.next_attempt_at).limit(1)).scalar()
    if nxt is not None:
        moments.append(nxt)
    return min(moments) if moments else None
