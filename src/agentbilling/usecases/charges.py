"""A charge's answer written on its invoice: paid, or failed towards the grace (R10); an upgrade's
answer makes its plan change or drops it (R8)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from agentbilling.domain import ledger
from agentbilling.domain.limits import kept_limit
from agentbilling.domain.money import Money
from agentbilling.domain.plans import Plan
from agentbilling.domain.subscription import Status, Subscription, next_retry
from agentbilling.storage.tables import invoices
from agentbilling.usecases.paid_plans import PaidPlans
from agentbilling.usecases.provider_commands import command
from agentbilling.usecases.segments import split
from agentbilling.usecases.subscriptions import load_for_write, save, with_payment_state


def charge_answered(billing: PaidPlans, conn: Any, tenant_id: str, invoice_id: str, paid_at: datetime | None,
                    first_failed_at: datetime | None, failures: int, now: datetime) -> None:
    """A charge of the invoice answered (its webhook, or the request that made it): paid at
    `paid_at`, or failed `failures` times since `first_failed_at`."""
    sub, row = load_for_write(billing, conn, tenant_id, now)  # the subscription first: the lock order of every write
    inv = conn.execute(select(invoices).where(invoices.c.tenant_id == tenant_id, invoices.c.id == invoice_id)
                       .with_for_update()).mappings().first()
    if inv is None or inv["status"] != "open":
        save(billing, conn, sub, now, row)
        return
    if inv["change_plan_id"] is not None:
        settle_change(billing, conn, sub, row, inv, paid_at, now)
        return
    if paid_at is not None:
        values: dict[str, Any] = {"status": "paid", "paid_at": paid_at, "next_attempt_at": None}
    else:
        assert first_failed_at is not None
        nxt = next_retry(first_failed_at, failures, billing.grace)
        values = {"first_failed_at": first_failed_at, "attempts": max(inv["attempts"], failures),
                  "next_attempt_at": nxt}
    conn.execute(update(invoices).where(invoices.c.tenant_id == tenant_id, invoices.c.id == invoice_id)
                 .values(**values))
    save(billing, conn, with_payment_state(billing, conn, sub, row["provider_subscription"]), now, row)


def settle_change(billing: PaidPlans, conn: Any, sub: Subscription, row: Mapping[str, Any], inv: Mapping[str, Any],
                  paid_at: datetime | None, now: datetime) -> None:
    """An upgrade's invoice answered: paid, the change is made as of when it was asked; failed,
    nothing changes, the invoice is voided and no payment issue follows (R8)."""
    c = invoices.c
    tenant_id, invoice_id = row["tenant_id"], inv["id"]
    if paid_at is None:
        conn.execute(update(invoices).where(c.tenant_id == tenant_id, c.id == invoice_id)
                     .values(status="void", next_attempt_at=None, first_failed_at=None))
        command(conn, tenant_id, "void", invoice_id, now)
        save(billing, conn, sub, now, row)
        return
    conn.execute(update(invoices).where(c.tenant_id == tenant_id, c.id == invoice_id)
                 .values(status="paid", paid_at=paid_at, next_attempt_at=None))
    target = billing.catalog.get(inv["change_plan_id"])
    credits = billing.book.credits(conn, tenant_id)
    currency = inv["currency"]
    moment = inv["change_at"]
    if (target is None or sub.status is not Status.ACTIVE or sub.plan is None or sub.plan.id == target.id
            or sub.cancel_at is not None or row["provider_subscription"] != inv["provider_subscription"]
            or sub.anchor is None or not sub.period(now).contains(moment)):
        # The plan moved on before the payment came: it is kept as credit, not lost.
        billing.book.put_credits(conn, tenant_id, ledger.add_credit(credits, Money(inv["total"], currency)))
        save(billing, conn, sub, now, row)
        return
    used = -sum(x["amount"] for x in inv["lines"] if x["description"] == ledger.CREDIT_LINE)
    credits = {**credits, currency: max(0, credits.get(currency, 0) - used)}
    make_change(billing, conn, row, sub, target, moment, inv["change_counter"], invoice_id,
                {k: v for k, v in credits.items() if v})


def make_change(billing: PaidPlans, conn: Any, row: Mapping[str, Any], sub: Subscription, target: Plan,
                moment: datetime, counter: int, invoice_id: str, credits: dict[str, int]) -> None:
    """The change in force from `moment`: the running segment ends there, closed by
    `invoice_id`, and the new plan's begins; limits recalculated (R8)."""
    tenant_id = row["tenant_id"]
    period = sub.period(moment)
    assert sub.plan is not None
    split(billing, conn, tenant_id, period, sub.plan, target, moment, counter, invoice_id)
    billing.book.put_credits(conn, tenant_id, credits)
    changed = dataclasses.replace(sub, plan=target, pending=None, custom_limit=kept_limit(sub.custom_limit, target))
    save(billing, conn, changed, moment, row, terms=None)
