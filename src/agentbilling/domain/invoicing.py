"""What an invoice charges: the renewal (price plus sessions beyond the included ones) and proration."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from agentbilling.domain.money import Money
from agentbilling.domain.periods import Period
from agentbilling.domain.plans import Plan


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    description: str
    quantity: int
    unit_amount: int  # minor units
    amount: int


@dataclass(frozen=True, slots=True)
class InvoiceDraft:
    currency: str
    lines: tuple[InvoiceLine, ...]

    @property
    def total(self) -> Money:
        return Money(sum(line.amount for line in self.lines), self.currency)


def overage_sessions(plan: Plan, used: int) -> int:
    return max(0, used - plan.included_sessions)


def renewal(plan: Plan, *, used_last_period: int, new_period: Period, ended_plan: Plan | None = None,
            credit: int = 0) -> InvoiceDraft:
    """The invoice at a period's start: this period's price, last period's sessions beyond the ones
    included, priced by the plan that period ended on (`ended_plan`, default `plan`), and any credit
    the tenant holds (from an immediate downgrade), up to the total."""
    if plan.price is None:
        raise ValueError(f"the {plan.name} plan has no price to invoice")
    price = plan.price.amount
    lines = [
        InvoiceLine(
            f"{plan.name} plan, {new_period.start.date().isoformat()} to {new_period.end.date().isoformat()}",
            1, price, price,
        )
    ]
    used_on = ended_plan or plan
    extra = overage_sessions(used_on, used_last_period)
    if extra and used_on.overage_price is not None:
        if used_on.overage_price.currency != plan.price.currency:
            raise ValueError("price and overage price are in different currencies")
        unit = used_on.overage_price.amount
        lines.append(InvoiceLine(
            f"{extra:,} sessions beyond the {used_on.included_sessions:,} included", extra, unit, extra * unit
        ))
    if credit > 0:
        used_credit = min(credit, sum(line.amount for line in lines))
        if used_credit:
            lines.append(InvoiceLine("Credit from an earlier plan change", 1, -used_credit, -used_credit))
    return InvoiceDraft(plan.price.currency, tuple(lines))


def proration(old: Plan, new: Plan, *, period: Period, now: datetime) -> InvoiceDraft:
    """An immediate change charges the price difference for what is left of the period (a credit if negative)."""
    if old.price is None or new.price is None:
        raise ValueError("proration needs two priced plans")
    if old.price.currency != new.price.currency:
        raise ValueError("cannot prorate between currencies")
    left = Fraction(max(0, int((period.end - now).total_seconds() * 1_000_000)),
                    int((period.end - period.start).total_seconds() * 1_000_000))
    difference = new.price.amount - old.price.amount
    amount = round(difference * left)
    line = InvoiceLine(f"{old.name} to {new.name}, prorated for the rest of the period", 1, amount, amount)
    return InvoiceDraft(new.price.currency, (line,))


def prorate_change(old: Plan, new: Plan, *, period: Period, at: datetime, scheduled: bool = False) -> InvoiceDraft | None:
    """What a plan change at `at` charges (or, negative, credits) for the rest of the period; None
    when there is nothing to prorate: between a plan without a price or in another currency, or for
    a scheduled change at the period's start (the renewal made then bills the new plan already)."""
    if scheduled and at == period.start:
        return None
    if old.price is None or new.price is None or old.price.currency != new.price.currency:
        return None
    return proration(old, new, period=period, now=at)
