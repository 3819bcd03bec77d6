"""Change plan (R8): now, at the period's end or on a date; made here (an upgrade waits for its
payment) or by a provider that bills; and cancel a scheduled change."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, update

from agentbilling.domain import ledger
from agentbilling.domain.errors import Conflict, CurrencyChange, InvalidInput, PaymentFailed
from agentbilling.domain.invoicing import InvoiceLine
from agentbilling.domain.money import Money
from agentbilling.domain.periods import Period
from agentbilling.domain.plan_change import PlanChange, When, check_target, effective_at
from agentbilling.domain.plans import Plan
from agentbilling.domain.subscription import Status, Subscription
from agentbilling.payments.provider import ProviderSubscription, billing_provider
from agentbilling.storage.tables import invoices
from agentbilling.usecases.charges import charge_answered, make_change
from agentbilling.usecases.invoices import add_invoice
from agentbilling.usecases.paid_plans import PaidPlans
from agentbilling.usecases.provider_commands import run_commands
from agentbilling.usecases.provider_subscriptions import sync_subscription
from agentbilling.usecases.segments import split_by_change
from agentbilling.usecases.subscriptions import load_for_write, locked_row, offered, save


def change_plan(billing: PaidPlans, tenant_id: str, plan_id: object, when: object, on: object, now: datetime) -> None:
    target = offered(billing, tenant_id, plan_id)
    when_ = _when(when)
    custom = _date(on) if when_ is When.CUSTOM_DATE else None
    if when_ is not When.CUSTOM_DATE and on is not None:
        raise InvalidInput("A date goes only with when = 'custom_date'.")
    billing.mode.change_plan(billing, tenant_id, target, when_, custom, now)


def _checked(billing: PaidPlans, conn: Any, tenant_id: str, target: Plan, when: When, custom: date | None,
             now: datetime) -> tuple[Subscription, Mapping[str, Any], Period, datetime]:
    """The running plan, locked, if it may change to `target`; its period and the change's moment."""
    sub, row = load_for_write(billing, conn, tenant_id, now)
    if not sub.paid or sub.status is not Status.ACTIVE or sub.offline or row["provider"] is None:
        raise Conflict("Plan changes need a paid subscription through the billing portal: subscribe first.")
    assert sub.plan is not None
    if sub.cancel_at is not None:
        raise Conflict("Your subscription is cancelled: resume it in the billing portal before changing plan.")
    check_target(tenant_id, sub.plan, target)
    period = sub.period(now)
    if target.price is None or sub.plan.price is None or target.price.currency != sub.plan.price.currency:
        # R8a: credit and extras are kept per currency; a plan in another one is a new subscription.
        raise CurrencyChange(f"The {target.name} plan is billed in another currency than yours: cancel this "
                             "plan and subscribe to it when this one ends.")
    return sub, row, period, effective_at(when, now=now, period=period, custom=custom)


def change_here(billing: PaidPlans, tenant_id: str, target: Plan, when: When, custom: date | None,
                now: datetime) -> None:
    """A change agentbilling makes: later, scheduled; now, at once, or once its invoice is paid."""
    to_pay: tuple[str, int, str] | None = None
    with billing.db.write() as conn:
        sub, row, _, moment = _checked(billing, conn, tenant_id, target, when, custom, now)
        if when is When.IMMEDIATELY:
            to_pay = _change_now(billing, conn, row, sub, target, now)
        else:
            save(billing, conn, dataclasses.replace(sub, pending=PlanChange(target, moment)), now, row)
    if to_pay is not None:
        _pay_change(billing, tenant_id, *to_pay, now)


def change_at_provider(billing: PaidPlans, tenant_id: str, target: Plan, when: When, custom: date | None,
                       now: datetime) -> None:
    """A change the provider makes (outside the transaction); its answer is stored. An immediate
    change closes the running segment: its extras go on the change's invoice."""
    split: tuple[Period, Plan, int, list[InvoiceLine]] | None = None
    with billing.db.write() as conn:
        sub, row, period, moment = _checked(billing, conn, tenant_id, target, when, custom, now)
        assert sub.plan is not None and target.price is not None
        if when is When.IMMEDIATELY:
            counter = billing.book.counter(conn, tenant_id, period)
            running = billing.book.running(conn, tenant_id, period, sub.plan)
            lines = ledger.extras_lines([running.ended(now, counter)], target.price.currency) \
                if now > running.start else []
            split = (period, sub.plan, counter, lines)
    sub_id = row["provider_subscription"]
    provider = billing_provider(billing.provider)
    items = _extras_before_change(billing, split, row) if split is not None else []
    try:
        answer = (provider.change_now(sub_id, target) if when is When.IMMEDIATELY
                  else provider.change_later(sub_id, target, moment))
    except PaymentFailed:  # as the provider has it now (unchanged), whatever its webhooks say first
        for item in items:
            provider.delete_item(item)
        _store_answer(billing, provider.subscription(sub_id), now)
        raise
    if split is not None:
        with billing.db.write() as conn:
            locked_row(conn, tenant_id)
            period, old, counter, _ = split
            split_by_change(billing, conn, tenant_id, period, old, target, now, counter,
                            items[0] if items else ledger.NOTHING_BEYOND)
    _store_answer(billing, answer, now)


def _extras_before_change(billing: PaidPlans, split: tuple[Period, Plan, int, list[InvoiceLine]],
                          row: Mapping[str, Any]) -> list[str]:
    """The running segment's extras as items the provider's change invoice takes along (Stripe)."""
    period, old, counter, lines = split
    assert old.price is not None
    ps = row["provider_subscription"]
    provider = billing_provider(billing.provider)
    return [provider.pending_item(row["provider_customer"], ps, line.amount, old.price.currency,
                                  line.description, f"extras-{ps}-{period.start:%Y%m%d%H%M%S}-{counter}")
            for line in lines]


def _change_now(billing: PaidPlans, conn: Any, row: Mapping[str, Any], sub: Subscription, target: Plan,
                now: datetime) -> tuple[str, int, str] | None:
    """An immediate change (R8, R8a): the running segment is closed on the change's invoice
    (the fee difference for the rest of the period and its extras). One that costs nothing
    (a credit note, or nothing) is made at once; one that costs money waits for its payment:
    its invoice carries the change, and paying it makes it (charges.settle_change). Returns what
    to charge, if anything."""
    assert sub.plan is not None
    tenant_id, ps = row["tenant_id"], row["provider_subscription"]
    period = sub.period(now)
    c = invoices.c
    # An earlier upgrade still unpaid (a request that died before its charge) is dropped.
    conn.execute(update(invoices).where(c.tenant_id == tenant_id, c.status == "open", c.change_plan_id.is_not(None))
                 .values(status="void", next_attempt_at=None))
    counter = billing.book.counter(conn, tenant_id, period)
    credits = billing.book.credits(conn, tenant_id)
    draft, _, rest = ledger.change(billing.book.running(conn, tenant_id, period, sub.plan), target, now, counter,
                                   credits)
    invoice_id = "pr_" + secrets.token_hex(10)
    total = draft.total.amount
    if total > 0:
        add_invoice(conn, tenant_id, invoice_id, "proration", draft, period.start, period.end, now, ps,
                    to_charge=True, next_attempt_at=None, change_plan_id=target.id, change_at=now,
                    change_counter=counter)
        return invoice_id, total, draft.currency
    if draft.lines:
        add_invoice(conn, tenant_id, invoice_id, "proration", draft, period.start, period.end, now, ps,
                    to_charge=False)
    if total < 0:
        rest = ledger.add_credit(rest, Money(-total, draft.currency))
    make_change(billing, conn, row, sub, target, now, counter, invoice_id, rest)
    return None


def _pay_change(billing: PaidPlans, tenant_id: str, invoice_id: str, total: int, currency: str, now: datetime) -> None:
    """Charge an upgrade's invoice now; the change is made once it is paid, else nothing
    changes and the invoice is voided (PaymentFailed, a 402)."""
    billing.provider.charge(tenant_id, invoice_id, total, currency, f"{invoice_id}-1", now)
    state = billing.provider.charge_state(invoice_id)
    with billing.db.write() as conn:  # as its webhook does; a no-op if that came first
        if state is not None and state.paid_at is not None:
            charge_answered(billing, conn, tenant_id, invoice_id, state.paid_at, None, 0, now)
        else:
            charge_answered(billing, conn, tenant_id, invoice_id, None, now, 1, now)
        status = conn.execute(select(invoices.c.status).where(invoices.c.tenant_id == tenant_id,
                                                              invoices.c.id == invoice_id)).scalar()
    run_commands(billing, now)
    if status != "paid":
        raise PaymentFailed("The payment for the new plan failed, so your plan was not changed. Update your "
                            "payment method (Manage) and try again.")


def _store_answer(billing: PaidPlans, answer: ProviderSubscription | None, now: datetime) -> None:
    if answer is not None:
        with billing.db.write() as conn:
            sync_subscription(billing, conn, answer, now)


def cancel_change(billing: PaidPlans, tenant_id: str, now: datetime) -> None:
    """Cancel the scheduled plan change: here, or at the provider that bills (its answer stored)."""
    with billing.db.write() as conn:
        sub, row = load_for_write(billing, conn, tenant_id, now)
        if sub.pending is None:
            raise Conflict("There is no scheduled plan change to cancel.")
        billing.mode.drop_change(billing, conn, sub, row, now)
    billing.mode.change_dropped(billing, row, now)


def drop_change_at_provider(billing: PaidPlans, row: Mapping[str, Any], now: datetime) -> None:
    _store_answer(billing, billing_provider(billing.provider).cancel_change(row["provider_subscription"]), now)


def _when(value: object) -> When:
    """The change's `when`, one of When's values (a request may send anything, of any type)."""
    if isinstance(value, str):
        try:
            return When(value)
        except ValueError:
            pass
    raise InvalidInput("when must be one of 'immediately', 'end_of_period', 'custom_date'.")


def _date(value: object) -> date:
    if not isinstance(value, str):
        raise InvalidInput("On custom date needs a date (YYYY-MM-DD).")
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not a date: use YYYY-MM-DD.") from None
    if len(value) != 10:
        raise InvalidInput(f"{value!r} is not a date: use YYYY-MM-DD.")
    return parsed
