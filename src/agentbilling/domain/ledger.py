"""The ledger (R8a, R10): what a paid period costs, split into segments at every plan change, how each
segment is closed once, what credit pays and what stays owed; the rules: README.md, "Design decisions"."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from math import floor

from agentbilling.domain.invoicing import InvoiceDraft, InvoiceLine
from agentbilling.domain.money import Money
from agentbilling.domain.periods import Period
from agentbilling.domain.plans import Plan
from agentbilling.domain.subscription import Status, Subscription

CREDIT_LINE = "Credit from an earlier plan change"
NOTHING_BEYOND = "included"  # closed_by of a segment closed with nothing to bill (within its allowance)


class CurrencyMismatch(ValueError):
    """Two amounts in different currencies were to be added."""


def left(period: Period, at: datetime) -> Fraction:
    """The share of `period` from `at` to its end (0 at or after the end, 1 at or before the start)."""
    whole = int((period.end - period.start).total_seconds() * 1_000_000)
    rest = int((period.end - min(max(at, period.start), period.end)).total_seconds() * 1_000_000)
    return Fraction(rest, whole)


def fee_left(plan: Plan, period: Period, at: datetime) -> int:
    """The plan's fee for the rest of the period from `at`, rounded once to the minor unit.

    Rounding each share once makes the fees billed for a period add up exactly to its segments' fees
    (`segment_fee`), whatever the changes."""
    if plan.price is None:
        return 0
    return round(plan.price.amount * left(period, at))


def change_fee(old: Plan, new: Plan, period: Period, at: datetime) -> int:
    """What an immediate change at `at` bills for the rest of the period: the new plan's fee for
    it minus the old one's (already billed). Negative: a credit note."""
    if old.price is None or new.price is None:
        raise ValueError("a change is prorated between two priced plans")
    if old.price.currency != new.price.currency:
        raise CurrencyMismatch("a change is prorated within one currency")
    return fee_left(new, period, at) - fee_left(old, period, at)


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of a paid period priced by one plan: [start, end), end None while it runs.

    `units_at_start` is the period's usage counter when it began; `units`, the units recognised
    in it, is known once it ended. `closed_by` names the invoice that billed its extras."""

    period: Period
    plan: Plan
    start: datetime
    units_at_start: int
    end: datetime | None = None
    units: int | None = None
    closed_by: str | None = None

    @property
    def priced_until(self) -> datetime:
        return self.end if self.end is not None else self.period.end

    def ended(self, at: datetime, counter: int) -> Segment:
        """The segment ended at `at` (a change), the period's counter then being `counter`."""
        if self.end is not None:
            raise ValueError("a segment ends once")
        return dataclasses.replace(self, end=at, units=max(0, counter - self.units_at_start))

    def closed(self, invoice_id: str) -> Segment:
        if self.closed_by is not None:
            raise ValueError(f"the segment from {self.start.isoformat()} is closed already by {self.closed_by}")
        if self.units is None:
            raise ValueError("a segment is closed once its units are known")
        return dataclasses.replace(self, closed_by=invoice_id)


def opened(period: Period, plan: Plan, at: datetime, counter: int) -> Segment:
    return Segment(period, plan, at, counter)


def share(seg: Segment) -> Fraction:
    return left(seg.period, seg.start) - left(seg.period, seg.priced_until)


def segment_fee(seg: Segment) -> int:
    return fee_left(seg.plan, seg.period, seg.start) - fee_left(seg.plan, seg.period, seg.priced_until)


def allowance(seg: Segment) -> int:
    """The included sessions for the segment's share of the period, rounded down."""
    return floor(seg.plan.included_sessions * share(seg))


def extra_units(seg: Segment) -> int:
    if seg.units is None:
        raise ValueError("a segment's extras are known once it ended")
    return max(0, seg.units - allowance(seg))


def extras_line(seg: Segment) -> InvoiceLine | None:
    """The segment's units beyond its allowance, at its plan's per-extra price; None if none."""
    n = extra_units(seg)
    if not n or seg.plan.overage_price is None:
        return None
    unit = seg.plan.overage_price.amount
    text = f"{n:,} sessions beyond the {allowance(seg):,} included"
    if (seg.start, seg.priced_until) != (seg.period.start, seg.period.end):  # a part of the period
        text = (f"{seg.plan.name}, {seg.start.date().isoformat()} to {seg.priced_until.date().isoformat()}: "
                + text)
    return InvoiceLine(text, n, unit, n * unit)


def closing(segments: Sequence[Segment], counter: int) -> list[Segment]:
    """The period's segments not closed yet, each ended (the last at the period's end, the counter
    then being `counter`): what its renewal or final invoice bills."""
    out = []
    for seg in segments:
        if seg.closed_by is not None:
            continue
        out.append(seg if seg.end is not None else seg.ended(seg.period.end, counter))
    return out


def extras_lines(segments: Iterable[Segment], currency: str) -> list[InvoiceLine]:
    lines = []
    for seg in segments:
        line = extras_line(seg)
        if line is None:
            continue
        assert seg.plan.overage_price is not None
        if seg.plan.overage_price.currency != currency:
            raise CurrencyMismatch(f"{seg.plan.name}'s extras are in {seg.plan.overage_price.currency}, "
                                   f"the invoice in {currency}")
        lines.append(line)
    return lines


# -- credit, kept per currency -------------------------------------------------------------------

def with_credit(lines: Sequence[InvoiceLine], currency: str,
                credits: Mapping[str, int]) -> tuple[InvoiceDraft, dict[str, int]]:
    """The invoice's lines with the tenant's credit in its currency applied up to its total, and
    the credit left; credit in other currencies is untouched."""
    balances = {k: v for k, v in credits.items() if v}
    total = sum(line.amount for line in lines)
    use = min(balances.get(currency, 0), max(0, total))
    out = list(lines)
    if use:
        out.append(InvoiceLine(CREDIT_LINE, 1, -use, -use))
        balances[currency] -= use
    return InvoiceDraft(currency, tuple(out)), {k: v for k, v in balances.items() if v}


def add_credit(credits: Mapping[str, int], amount: Money) -> dict[str, int]:
    if amount.amount < 0:
        raise ValueError("credit is added as a positive amount")
    out = dict(credits)
    out[amount.currency] = out.get(amount.currency, 0) + amount.amount
    return {k: v for k, v in out.items() if v}


# -- what a period's invoices hold ---------------------------------------------------------------

def fee_line(plan: Plan, period: Period) -> InvoiceLine:
    if plan.price is None:
        raise ValueError(f"the {plan.name} plan has no price to invoice")
    price = plan.price.amount
    return InvoiceLine(f"{plan.name} plan, {period.start.date().isoformat()} to {period.end.date().isoformat()}",
                       1, price, price)


def renewal(plan: Plan, new_period: Period, closed: Sequence[Segment],
            credits: Mapping[str, int]) -> tuple[InvoiceDraft, dict[str, int]]:
    """The invoice at a period's start: its fee, the extras of the segments the last period closes
    with it, and the credit in its currency."""
    fee = fee_line(plan, new_period)
    assert plan.price is not None
    currency = plan.price.currency
    return with_credit([fee, *extras_lines(closed, currency)], currency, credits)


def final(closed: Sequence[Segment], credits: Mapping[str, int]) -> tuple[InvoiceDraft, dict[str, int]] | None:
    """The invoice that closes a period with no renewal (the plan was cancelled, ended unpaid or
    replaced): the extras of its open segments; None when they have none."""
    if not closed:
        return None
    currency = _currency(closed[-1].plan)
    lines = extras_lines(closed, currency)
    if not lines:
        return None
    return with_credit(lines, currency, credits)


def change(old: Segment, new: Plan, at: datetime, counter: int,
           credits: Mapping[str, int]) -> tuple[InvoiceDraft, Segment, dict[str, int]]:
    """An immediate change at `at`: the old segment ends and is closed on this invoice (its
    extras), with the fee difference for the rest of the period. Credit pays a positive total; a
    negative one is a credit note. Returns the draft, the ended old segment, and the credit left."""
    ended = old.ended(at, counter)
    currency = _currency(new)
    fee = change_fee(old.plan, new, old.period, at)
    lines = [InvoiceLine(f"{old.plan.name} to {new.name}, prorated for the rest of the period", 1, fee, fee)] \
        if fee else []
    if at > old.start:  # a segment of no length has nothing to close: its units go to the next
        lines += extras_lines([ended], currency)
    if sum(line.amount for line in lines) > 0:
        draft, rest = with_credit(lines, currency, credits)
    else:
        draft, rest = InvoiceDraft(currency, tuple(lines)), dict(credits)
    return draft, ended, rest


def _currency(plan: Plan) -> str:
    if plan.price is not None:
        return plan.price.currency
    if plan.overage_price is not None:
        return plan.overage_price.currency
    raise ValueError(f"the {plan.name} plan has no price")


def balances_due(open_invoices: Iterable[tuple[str, int]]) -> list[Money]:
    """What the tenant owes, per currency: the totals of its invoices not paid (open, past due)."""
    owed: dict[str, int] = {}
    for currency, total in open_invoices:
        if total > 0:
            owed[currency] = owed.get(currency, 0) + total
    return [Money(v, k) for k, v in owed.items()]


# -- what is due next, for a plan agentbilling bills ------------------------------------------------

class Step(StrEnum):
    END = "end"  # the plan ends (its cancellation's or its unpaid period's end): a final invoice
    CHANGE = "change"  # a scheduled plan change takes effect
    RENEW = "renew"  # a period ends and the next begins: the renewal invoice


_ORDER = {Step.END: 0, Step.CHANGE: 1, Step.RENEW: 2}


def next_step(sub: Subscription, billed_until: datetime | None, now: datetime) -> tuple[datetime, Step] | None:
    """The first thing time did by `now` to a running plan that agentbilling invoices, from its
    stored state and the end of the last period invoiced (`billed_until`); None when it is up to
    date. At one moment the plan's end comes first (nothing is renewed for a plan that ended), then
    a change (a change at a period's end prices the period that begins), then the renewal."""
    if sub.status is not Status.ACTIVE:
        return None
    steps: list[tuple[datetime, Step]] = []
    ends = [m for m in (sub.cancel_at, sub.lapses_at()) if m is not None and m <= now]
    if ends:
        steps.append((min(ends), Step.END))
    if sub.pending is not None and sub.pending.effective_at <= now:
        steps.append((sub.pending.effective_at, Step.CHANGE))
    if billed_until is not None and billed_until <= now:
        steps.append((billed_until, Step.RENEW))
    return min(steps, key=lambda s: (s[0], _ORDER[s[1]])) if steps else None
