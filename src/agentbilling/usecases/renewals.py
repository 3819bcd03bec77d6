"""A plan taken to `now` one step at a time: each renewal closing the period before, a scheduled
change splitting its period, its end with the final invoice; and the same steps a billing provider took."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agentbilling.domain import ledger
from agentbilling.domain.invoicing import InvoiceDraft, InvoiceLine
from agentbilling.domain.ledger import Step
from agentbilling.domain.money import Money
from agentbilling.domain.periods import Period, period_at
from agentbilling.domain.plans import Plan
from agentbilling.domain.subscription import Status, Subscription, at, with_change_applied
from agentbilling.usecases.invoices import add_invoice
from agentbilling.usecases.paid_plans import PaidPlans
from agentbilling.usecases.provider_commands import command
from agentbilling.usecases.segments import split
from agentbilling.usecases.subscriptions import US, stored


def catch_up(billing: PaidPlans, conn: Any, row: Mapping[str, Any],
             now: datetime) -> tuple[Subscription, dict[str, Any]]:
    """The plan agentbilling bills taken to `now` one step at a time (domain/ledger.next_step): its
    end with the final invoice, a scheduled change splitting its period, each renewal closing the
    period before. Every step is written in this transaction, under the subscription's row lock, and
    moves the stored state past it: a period is closed once however many writers run."""
    tenant_id, sub, billed = row["tenant_id"], stored(billing, row), row["billed_until"]
    if ledger.next_step(sub, billed, now) is None:
        return at(sub, now), {}  # up to date: nothing read, nothing written
    credits = before = billing.book.credits(conn, tenant_id)
    while (step := ledger.next_step(sub, billed, now)) is not None:
        moment, kind = step
        assert sub.anchor is not None and sub.plan is not None
        anchor = sub.anchor
        if kind is Step.END:
            credits = final(billing, conn, row, sub, period_at(anchor, moment - US), moment, credits)
            sub = at(dataclasses.replace(sub, pending=None), moment)
        elif kind is Step.CHANGE:
            credits = _scheduled_change(billing, conn, row, sub, moment, credits)
            sub = with_change_applied(sub)
        else:
            credits = _renew(billing, conn, row, sub, moment, credits)
            billed = period_at(anchor, moment).end
    if credits != before:
        billing.book.put_credits(conn, tenant_id, credits)
    return at(sub, now), {"billed_until": billed}


def _renew(billing: PaidPlans, conn: Any, row: Mapping[str, Any], sub: Subscription, boundary: datetime,
           credits: dict[str, int]) -> dict[str, int]:
    """The renewal at `boundary`: the new period's fee, the extras of the period that ended (its
    segments closed on it), credit in its currency; the new period's first segment."""
    assert sub.anchor is not None and sub.plan is not None
    tenant_id, ps = row["tenant_id"], row["provider_subscription"]
    ended, new = period_at(sub.anchor, boundary - US), period_at(sub.anchor, boundary)
    closing = ledger.closing(billing.book.segments(conn, tenant_id, ended, sub.plan),
                             billing.book.counter(conn, tenant_id, ended))
    draft, rest = ledger.renewal(sub.plan, new, closing, credits)
    invoice_id = f"rn_{ps[-12:]}_{new.start:%Y%m%d%H%M%S}"
    if not add_invoice(conn, tenant_id, invoice_id, "renewal", draft, ended.start, new.end, boundary, ps,
                       to_charge=True):
        return credits
    for seg in closing:
        billing.book.put(conn, tenant_id, seg.closed(invoice_id))
    billing.book.put(conn, tenant_id, ledger.opened(new, sub.plan, boundary, 0))
    return rest


def final(billing: PaidPlans, conn: Any, row: Mapping[str, Any], sub: Subscription, period: Period,
          moment: datetime, credits: dict[str, int]) -> dict[str, int]:
    """A period that ends with no renewal (the plan was cancelled, ended unpaid or replaced):
    its open segments are closed on a final invoice of their extras (none if within the
    allowance). What was owed before stays owed."""
    assert sub.plan is not None
    tenant_id, ps = row["tenant_id"], row["provider_subscription"]
    closing = ledger.closing(billing.book.segments(conn, tenant_id, period, sub.plan),
                             billing.book.counter(conn, tenant_id, period))
    made = ledger.final(closing, credits)
    invoice_id = f"fi_{ps[-12:]}_{period.start:%Y%m%d%H%M%S}"
    if made is not None:
        draft, credits = made
        add_invoice(conn, tenant_id, invoice_id, "final", draft, period.start, period.end, moment, ps,
                    to_charge=True)
    for seg in closing:
        billing.book.put(conn, tenant_id, seg.closed(invoice_id if made is not None else ledger.NOTHING_BEYOND))
    return credits


def _scheduled_change(billing: PaidPlans, conn: Any, row: Mapping[str, Any], sub: Subscription, moment: datetime,
                      credits: dict[str, int]) -> dict[str, int]:
    """A scheduled change in force at `moment`. At a period's start the renewal prices the new
    plan; mid-period it splits the period's segments there and bills the fee difference for
    the rest of it, as an immediate change does (its invoice's id is the change's moment)."""
    assert sub.anchor is not None and sub.plan is not None and sub.pending is not None
    tenant_id, ps, new = row["tenant_id"], row["provider_subscription"], sub.pending.plan
    period = period_at(sub.anchor, moment)
    if moment == period.start:
        return credits
    split(billing, conn, tenant_id, period, sub.plan, new, moment, billing.book.counter(conn, tenant_id, period),
          None)
    if sub.plan.price is None or new.price is None or sub.plan.price.currency != new.price.currency:
        return credits
    fee = ledger.change_fee(sub.plan, new, period, moment)
    if not fee:
        return credits
    line = InvoiceLine(f"{sub.plan.name} to {new.name}, prorated for the rest of the period", 1, fee, fee)
    if fee > 0:
        draft, credits = ledger.with_credit([line], new.price.currency, credits)
    else:
        draft, credits = InvoiceDraft(new.price.currency, (line,)), ledger.add_credit(
            credits, Money(-fee, new.price.currency))
    add_invoice(conn, tenant_id, f"pc_{ps[-12:]}_{moment:%Y%m%d%H%M%S}", "proration", draft, period.start,
                period.end, moment, ps, to_charge=draft.total.amount > 0)
    return credits


# -- the same steps, taken by a provider that bills (Stripe) ----------------------------------------

def catch_up_at_provider(billing: PaidPlans, conn: Any, row: Mapping[str, Any],
                         now: datetime) -> tuple[Subscription, dict[str, Any]]:
    """The plan a provider bills taken to `now`: the provider renews it; a scheduled change whose
    phase came splits its period's segments (R8a)."""
    sub = stored(billing, row)
    if (sub.status is Status.ACTIVE and sub.pending is not None and sub.pending.effective_at <= now
            and row["provider_subscription"] and not row["offline"]):
        split_at_provider(billing, conn, row, sub, sub.pending.plan, now)  # its phase came (R8a)
    return at(sub, now), {}


def split_at_provider(billing: PaidPlans, conn: Any, row: Mapping[str, Any], sub: Subscription, plan: Plan,
                      now: datetime) -> None:
    """The provider put the subscription on `plan` (a schedule's phase came): the period's
    segments split where the change was due, or now; the renewal closes both (R8a). A change
    made here (immediate) split them already."""
    assert sub.anchor is not None and sub.plan is not None
    moment = row["pending_at"] if row["pending_plan_id"] == plan.id and row["pending_at"] is not None \
        and row["pending_at"] <= now else now
    period = period_at(sub.anchor, moment)
    if billing.book.running(conn, row["tenant_id"], period, sub.plan).plan.id == plan.id or moment == period.start:
        return
    split(billing, conn, row["tenant_id"], period, sub.plan, plan, moment,
          billing.book.counter(conn, row["tenant_id"], period), None)


def final_at_provider(billing: PaidPlans, conn: Any, row: Mapping[str, Any], sub: Subscription,
                      now: datetime) -> None:
    """A plan the provider bills ended (Stripe): its last period's segments are closed, and their
    extras invoiced by a provider command carried out after the commit (R8a)."""
    assert sub.anchor is not None and sub.plan is not None
    tenant_id, ps = row["tenant_id"], row["provider_subscription"]
    period = period_at(sub.anchor, (sub.ended_at or now) - US)
    closing = ledger.closing(billing.book.segments(conn, tenant_id, period, sub.plan),
                             billing.book.counter(conn, tenant_id, period))
    marker = f"final:{ps}"
    for seg in closing:
        billing.book.close(conn, tenant_id, seg, marker)
    if any(ledger.extras_line(seg) for seg in closing):
        command(conn, tenant_id, "final_invoice", ps, now)
