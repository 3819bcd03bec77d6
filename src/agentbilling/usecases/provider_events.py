"""The provider's webhooks: an inbox (each event stored once, unique by provider and event id, in
the transaction that applies it) and a table from what the event names to the handler that applies it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from agentbilling.domain import ledger
from agentbilling.domain.errors import NotFound
from agentbilling.domain.periods import period_at
from agentbilling.domain.subscription import Status, at
from agentbilling.payments.provider import (
    ChargeState,
    DraftRenewal,
    InvoiceMirror,
    Notification,
    ProviderSubscription,
    billing_provider,
)
from agentbilling.storage.leases import tenant_lease
from agentbilling.storage.tables import invoices, provider_events, subscriptions
from agentbilling.usecases.charges import charge_answered
from agentbilling.usecases.paid_plans import PaidPlans
from agentbilling.usecases.provider_commands import command, run_commands
from agentbilling.usecases.provider_subscriptions import sync_subscription
from agentbilling.usecases.subscriptions import US, load, load_for_write, locked_row, save, stored, with_payment_state

log = logging.getLogger(__name__)

STARTS = ("checkout.completed", "checkout.session.completed", "customer.subscription.created")


def receive(billing: PaidPlans, body: bytes, headers: Mapping[str, str], clock: Callable[[], datetime]) -> str:
    """A provider delivery: verified (WebhookRejected if not the provider's), stored, applied once:
    "applied"; "duplicate" for an event received before; "ignored" for one about no tenant here.

    A notification names an object; what is applied is that object as the provider has it now,
    read again once this delivery holds the tenant (its row lock on PostgreSQL; on SQLite a lock
    per tenant in this process, so that the database's one writer never waits for a provider),
    so that of two deliveries at once the one applied last also read last: any order of
    delivery ends in the provider's latest state. The time is read again then too.
    """
    now = clock()
    note = billing.provider.verify(body, headers)
    if _seen(billing, note):
        return "duplicate"
    created = billing.mode.event_created(note)
    named = _named(billing, note, created)
    if isinstance(named, DraftRenewal):
        _add_overage(billing, named, now)  # before the provider finalizes it; once, by its idempotency key
    tenant_id = note.tenant_id or getattr(named, "tenant_id", None)
    applies = tenant_id is not None and named is not None and not isinstance(named, DraftRenewal)
    try:
        if not applies:
            with billing.db.write() as conn:
                _store_event(billing, conn, note, tenant_id, body, now)
            return "applied" if named is not None else "ignored"
        assert tenant_id is not None
        now, named, outcome = _store_and_apply(billing, note, tenant_id, body, clock, now, named, created)
    except IntegrityError:
        return "duplicate"  # the same event, applied meanwhile by a concurrent delivery
    if outcome == "applied" and isinstance(named, ProviderSubscription):
        _after_start(billing, named, now, started=note.type in STARTS)
    return outcome


def _store_and_apply(billing: PaidPlans, note: Notification, tenant_id: str, body: bytes, clock: Callable[[], datetime],
                     now: datetime, named: Any, created: int) -> tuple[datetime, Any, str]:
    """Store the event and apply what it names, read again (with the time) once the tenant is held."""
    if billing.db.is_sqlite:
        with billing.tenant_locks.hold(tenant_id), tenant_lease(billing.db, tenant_id):  # issue 13: across processes
            now, named = clock(), _named(billing, note, created)
            with billing.db.write() as conn:
                _store_event(billing, conn, note, tenant_id, body, now)
                outcome = _apply(billing, conn, note, tenant_id, named, now)
    else:
        with billing.db.write() as conn:
            _store_event(billing, conn, note, tenant_id, body, now)
            if _locked(conn, tenant_id):
                now, named = clock(), _named(billing, note, created)
            outcome = _apply(billing, conn, note, tenant_id, named, now)
    return now, named, outcome


def _seen(billing: PaidPlans, note: Notification) -> bool:
    """The event is in the inbox already."""
    with billing.db.read() as conn:
        seen = conn.execute(select(provider_events.c.event_id).where(
            provider_events.c.provider == billing.provider.name, provider_events.c.event_id == note.id)).first()
    return seen is not None


def _store_event(billing: PaidPlans, conn: Any, note: Notification, tenant_id: str | None, body: bytes,
                 now: datetime) -> None:
    conn.execute(insert(provider_events).values(provider=billing.provider.name, event_id=note.id, type=note.type,
                                                tenant_id=tenant_id, payload=body.decode(), received_at=now))


def _locked(conn: Any, tenant_id: str) -> bool:
    """Take the tenant's row lock; False if there is no such tenant."""
    try:
        locked_row(conn, tenant_id)
    except NotFound:
        return False
    return True


def _named(billing: PaidPlans, note: Notification, created: int) -> Any:
    """The object a notification names, as the provider has it now."""
    if note.subscription:
        return billing.provider.subscription(note.subscription)
    if note.invoice:
        return billing.mode.invoice_named(billing, note, created)
    return None


def _charge_state(billing: PaidPlans, conn: Any, state: ChargeState, now: datetime) -> None:
    charge_answered(billing, conn, state.tenant_id, state.invoice_id, state.paid_at, state.first_failed_at,
                    state.failures, now)


def _mirror_invoice(billing: PaidPlans, conn: Any, m: InvoiceMirror, now: datetime) -> None:
    """The provider's invoice as it stands there, kept beside ours (Stripe's invoices)."""
    # the subscription first: the lock order of every write
    sub, row = load_for_write(billing, conn, m.tenant_id, now)
    c = invoices.c
    old = conn.execute(select(invoices).where(c.tenant_id == m.tenant_id, c.id == m.id).with_for_update()) \
        .mappings().first()
    failed = [x for x in (m.failed_at, old["first_failed_at"] if old else None) if x is not None]
    values = {
        "provider_subscription": m.subscription, "kind": m.kind, "status": m.status, "currency": m.currency,
        "total": m.total, "lines": [{"description": d, "quantity": q, "unit_amount": a // q if q else a,
                                     "amount": a} for d, q, a in m.lines],
        "period_start": m.period_start, "period_end": m.period_end, "paid_at": m.paid_at,
        "attempts": m.attempts, "next_attempt_at": m.next_attempt_at if m.status == "open" else None,
        "first_failed_at": min(failed) if failed else None,
    }
    if old is None:
        conn.execute(insert(invoices).values(tenant_id=m.tenant_id, id=m.id, created_at=m.created_at, **values))
    else:
        conn.execute(update(invoices).where(c.tenant_id == m.tenant_id, c.id == m.id).values(**values))
    save(billing, conn, with_payment_state(billing, conn, sub, row["provider_subscription"]), now, row)


# What an event names, and the handler that applies it under the tenant's lock.
HANDLERS: dict[type, Callable[[PaidPlans, Any, Any, datetime], None]] = {
    ProviderSubscription: sync_subscription,
    ChargeState: _charge_state,
    InvoiceMirror: _mirror_invoice,
}


def _apply(billing: PaidPlans, conn: Any, note: Notification, tenant_id: str, named: Any, now: datetime) -> str:
    handler = HANDLERS.get(type(named))
    try:
        if handler is not None:
            handler(billing, conn, named, now)
    except NotFound:
        log.warning("%s event %s is about tenant %r, which is not here; stored, not applied",
                    billing.provider.name, note.id, tenant_id)
        return "ignored"
    return "applied"


def _after_start(billing: PaidPlans, ps: ProviderSubscription, now: datetime, *, started: bool) -> None:
    """Once a plan runs, no other checkout of the tenant may start a second one; a provider
    subscription that is not the running plan (started in a race, or left running after an
    offline deal replaced it) is ended at the provider whenever one of its events comes."""
    with billing.db.read() as conn:
        row = conn.execute(select(subscriptions.c.provider_subscription, subscriptions.c.status)
                           .where(subscriptions.c.tenant_id == ps.tenant_id)).first()
    if row is None:
        return
    current, status = row
    if current == ps.id:
        if started:
            with billing.db.write() as conn:
                command(conn, ps.tenant_id, "expire_checkouts", ps.customer, now)
    elif status == Status.ACTIVE.value and ps.status in ("active", "past_due", "trialing"):
        log.warning("tenant %s: a second subscription %s started while %s runs; ending it at the provider",
                    ps.tenant_id, ps.id, current or "an offline plan")
        with billing.db.write() as conn:
            command(conn, ps.tenant_id, "end", ps.id, now)
            command(conn, ps.tenant_id, "refund", ps.id, now)  # what it was paid goes back (R8a)
    run_commands(billing, now)


def _add_overage(billing: PaidPlans, draft: DraftRenewal, now: datetime) -> None:
    """The extras of the period that ended (its segments not closed yet, each priced by its
    plan) on its renewal invoice while it is a draft; each line under its own idempotency key,
    then the segments closed by that invoice (R8a)."""
    with billing.db.read() as conn:
        sub, row = load(billing, conn, draft.tenant_id, now)
        if sub.status is not Status.ACTIVE or sub.anchor is None or row["provider_subscription"] is None:
            return
        ended = period_at(sub.anchor, draft.period_end - US)
        # The plan that period began on, for a period whose segments were not kept: as stored
        # then, or the one before a change that has since been stored at or after its end.
        plan = at(stored(billing, row), ended.end - US).plan
        if row["previous_plan_id"] and row["plan_changed_at"] is not None and row["plan_changed_at"] >= ended.end:
            plan = billing.catalog.get(row["previous_plan_id"]) or plan
        if plan is None:
            return
        closing = ledger.closing(billing.book.segments(conn, draft.tenant_id, ended, plan),
                                 billing.book.counter(conn, draft.tenant_id, ended))
    for seg in closing:
        line = ledger.extras_line(seg)
        if line is not None:
            billing_provider(billing.provider).add_overage(draft, line.amount, line.description,
                                                           f"overage-{draft.invoice_id}-{seg.start:%Y%m%d%H%M%S%f}")
    with billing.db.write() as conn:
        locked_row(conn, draft.tenant_id)  # the subscription's lock orders the tenant's billing
        for seg in closing:
            billing.book.close(conn, draft.tenant_id, seg, draft.invoice_id)
