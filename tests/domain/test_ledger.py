"""The ledger (R8a): segments, closing a period once, credit per currency, what is due next; and a
stateful property test that plays random histories over 24 periods against its invariants."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from math import floor

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from agentbilling.catalog import load_catalog
from agentbilling.domain import ledger
from agentbilling.domain.invoicing import InvoiceLine
from agentbilling.domain.ledger import Segment, Step
from agentbilling.domain.money import Money
from agentbilling.domain.periods import Period, add_months, period_at
from agentbilling.domain.plan_change import PlanChange
from agentbilling.domain.plans import Plan
from agentbilling.domain.subscription import Status, Subscription, at, start_plan, with_change_applied
from agentbilling.domain.trial import Trial

CATALOG = load_catalog()
GROWTH, SCALE, STARTER = CATALOG["growth"], CATALOG["scale"], CATALOG["starter"]
JPY = Plan(id="tokyo", name="Tokyo", price=Money(25000, "JPY"), included_sessions=1000,
           overage_price=Money(10, "JPY"), base_session_limit=2000, max_session_limit=5000)
US = timedelta(microseconds=1)


def test_the_worked_example_growth_for_29_of_30_days_with_3000_sessions_then_scale():
    period = Period(datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC), 0)
    boundary = period.start + timedelta(days=29)
    growth = ledger.opened(period, GROWTH, period.start, 0).ended(boundary, 3000)
    assert ledger.allowance(growth) == 2416  # floor(2,500 x 29/30)
    assert ledger.extra_units(growth) == 584
    assert ledger.extras_line(growth).amount == 5256  # 584 x $0.09 = $52.56
    # Whatever happens at the boundary: an immediate change there closes it on the change's invoice.
    draft, ended, _ = ledger.change(ledger.opened(period, GROWTH, period.start, 0), SCALE, boundary, 3000, {})
    assert ended == growth
    assert [line.amount for line in draft.lines] == [ledger.change_fee(GROWTH, SCALE, period, boundary), 5256]


def test_an_upgrade_an_hour_before_the_renewal_still_bills_the_periods_overage():
    """Finding 4: Growth with 3,000 sessions upgraded to Scale an hour before the period ends."""
    period = period_at(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 15, tzinfo=UTC))
    hour_before = period.end - timedelta(hours=1)
    draft, _, _ = ledger.change(ledger.opened(period, GROWTH, period.start, 0), SCALE, hour_before, 3000, {})
    extras = [line for line in draft.lines if "beyond" in line.description]
    assert extras and extras[0].quantity == 3000 - floor(2500 * Fraction(31 * 24 - 1, 31 * 24))
    # Back to Growth at once: the credit note is the fee difference for what is left, not the overage.
    scale = ledger.opened(period, SCALE, hour_before, 3000)
    back, _, _ = ledger.change(scale, GROWTH, hour_before + timedelta(minutes=1), 3000, {})
    assert back.total.amount == ledger.change_fee(SCALE, GROWTH, period, hour_before + timedelta(minutes=1))
    assert -back.total.amount < 60_000  # cents: the hour's share of $600, never the $599.93 found


def test_fees_of_the_segments_add_up_to_what_the_changes_bill():
    period = Period(datetime(2026, 1, 31, 9, tzinfo=UTC), datetime(2026, 2, 28, 9, tzinfo=UTC), 0)
    moments = [period.start + timedelta(days=d, seconds=s) for d, s in ((3, 17), (9, 5), (20, 1))]
    plans = [STARTER, SCALE, GROWTH, STARTER]
    billed = STARTER.price.amount + sum(ledger.change_fee(a, b, period, m)
                                        for a, b, m in zip(plans, plans[1:], moments, strict=False))
    bounds = [period.start, *moments, period.end]
    segs = [Segment(period, p, s, 0, e, 0) for p, s, e in zip(plans, bounds, bounds[1:], strict=False)]
    assert billed == sum(ledger.segment_fee(seg) for seg in segs)


def test_credit_pays_only_invoices_in_its_currency():
    """Finding 5: a JPY credit never pays a USD renewal."""
    period = Period(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), 0)
    draft, rest = ledger.renewal(GROWTH, period, [], {"JPY": 25000})
    assert draft.total == Money(19900, "USD") and rest == {"JPY": 25000}
    draft, rest = ledger.renewal(GROWTH, period, [], {"JPY": 25000, "USD": 500})
    assert draft.total == Money(19400, "USD") and rest == {"JPY": 25000}
    with pytest.raises(ledger.CurrencyMismatch):
        ledger.change_fee(GROWTH, JPY, period, period.start + timedelta(days=1))


def test_a_segment_is_closed_once():
    period = Period(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), 0)
    seg = ledger.opened(period, GROWTH, period.start, 0).ended(period.end, 10).closed("rn_1")
    with pytest.raises(ValueError, match="closed already"):
        seg.closed("rn_2")
    assert ledger.closing([seg], 10) == []


def test_at_one_moment_the_plans_end_comes_before_a_change_and_a_change_before_the_renewal():
    anchor = datetime(2026, 1, 31, 9, tzinfo=UTC)
    trial = Trial(anchor - timedelta(days=1), anchor + timedelta(days=13), 50)
    sub = Subscription("t", Status.ACTIVE, trial, GROWTH, anchor)
    end = add_months(anchor, 1)
    assert ledger.next_step(sub, end, end - US) is None
    assert ledger.next_step(dataclasses.replace(sub, pending=PlanChange(SCALE, end)), end, end) == (end, Step.CHANGE)
    assert ledger.next_step(dataclasses.replace(sub, cancel_at=end, pending=PlanChange(SCALE, end)), end, end) == \
        (end, Step.END)
    assert ledger.next_step(sub, end, end) == (end, Step.RENEW)


def test_balances_due_add_up_per_currency():
    assert ledger.balances_due([("USD", 10900), ("JPY", 25000), ("USD", 100), ("USD", -5)]) == [
        Money(11000, "USD"), Money(25000, "JPY")]


# -- random histories over 24 periods -----------------------------------------------------------

PLANS = [STARTER, GROWTH, SCALE, CATALOG["outreach"], JPY]


def brute_allowance(seg: Segment) -> int:
    """The allowance from the definition, independently: included x (segment seconds / period seconds)."""
    whole = (seg.period.end - seg.period.start) // US
    part = (seg.priced_until - seg.start) // US
    return (seg.plan.included_sessions * part) // whole


class Books(RuleBasedStateMachine):
    """A tenant's paid plan as agentbilling bills it, driven by the domain's own steps: usage at any
    moment, changes in all three modes, cancel and resume, failed and late payments, a new plan
    after one ended. The model keeps what each invoice billed to check the invariants."""

    @initialize(day=st.integers(28, 31), plan=st.sampled_from(PLANS))
    def start(self, day: int, plan: Plan) -> None:
        self.now = datetime(2026, 1, day, 9, tzinfo=UTC)
        trial = Trial(self.now - timedelta(days=1), self.now + timedelta(days=13), 50)
        self.sub = start_plan(Subscription("t", Status.TRIALING, trial), plan, self.now, used=0)
        self.first_period = self.sub.period(self.now)
        self.billed_until = self.first_period.end
        self.counters: dict[datetime, int] = {}
        self.segments: dict[datetime, list[Segment]] = {}
        self.invoices: list[dict] = []
        self.credits: dict[str, int] = {}
        self.fees: dict[datetime, int] = {self.first_period.start: plan.price.amount}
        self.extras: dict[datetime, int] = {}
        self.voided_debt = 0
        self.end_at = add_months(self.now, 24)
        self.segments[self.first_period.start] = [ledger.opened(self.first_period, plan, self.now, 0)]

    # -- helpers ----------------------------------------------------------------------------

    def _invoice(self, period: Period, draft, kind: str, status: str = "open") -> None:
        self.invoices.append({"period": period.start, "kind": kind, "currency": draft.currency,
                              "total": draft.total.amount, "lines": draft.lines,
                              "status": status if draft.total.amount > 0 else "paid"})

    def _close(self, period: Period, closing: list[Segment], invoice_id: str) -> None:
        stored = self.segments[period.start]
        for seg in closing:
            i = next(k for k, s in enumerate(stored) if s.start == seg.start)
            stored[i] = seg.closed(invoice_id)  # raises if closed twice
            line = ledger.extras_line(seg)
            self.extras[period.start] = self.extras.get(period.start, 0) + (line.amount if line else 0)

    def _running(self, period: Period) -> Segment:
        return [s for s in self.segments[period.start] if s.end is None][-1]

    def _catch_up(self) -> None:
        while (step := ledger.next_step(self.sub, self.billed_until, self.now)) is not None:
            moment, kind = step
            if kind is Step.END:
                period = period_at(self.sub.anchor, moment - US)
                closing = ledger.closing(self.segments[period.start], self.counters.get(period.start, 0))
                made = ledger.final(closing, self.credits)
                if made:
                    draft, self.credits = made
                    self._invoice(period, draft, "final")
                self._close(period, closing, f"fi_{period.start}")
                self.sub = at(dataclasses.replace(self.sub, pending=None), moment)
            elif kind is Step.CHANGE:
                period = period_at(self.sub.anchor, moment)
                new = self.sub.pending.plan
                if moment != period.start:
                    counter = self.counters.get(period.start, 0)
                    running = self._running(period)
                    stored = self.segments[period.start]
                    stored[stored.index(running)] = running.ended(moment, counter)
                    stored.append(ledger.opened(period, new, moment, counter))
                    fee = ledger.change_fee(self.sub.plan, new, period, moment)
                    self.fees[period.start] += fee
                    if fee > 0:
                        draft, self.credits = ledger.with_credit([InvoiceLine("c", 1, fee, fee)], new.price.currency,
                                                                 self.credits)
                        self._invoice(period, draft, "proration")
                    elif fee < 0:
                        self.credits = ledger.add_credit(self.credits, Money(-fee, new.price.currency))
                self.sub = with_change_applied(self.sub)
            else:
                ended, new = period_at(self.sub.anchor, moment - US), period_at(self.sub.anchor, moment)
                closing = ledger.closing(self.segments[ended.start], self.counters.get(ended.start, 0))
                draft, self.credits = ledger.renewal(self.sub.plan, new, closing, self.credits)
                self._invoice(new, draft, "renewal")
                self.fees[new.start] = self.sub.plan.price.amount
                self._close(ended, closing, f"rn_{new.start}")
                self.segments[new.start] = [ledger.opened(new, self.sub.plan, moment, 0)]
                self.billed_until = new.end
        self.sub = at(self.sub, self.now)

    def _running_plan(self) -> bool:
        return self.sub.status is Status.ACTIVE

    # -- rules ------------------------------------------------------------------------------

    @precondition(lambda self: self.now < self.end_at)
    @rule(hours=st.integers(1, 24 * 40))
    def time_passes(self, hours: int) -> None:
        self.now += timedelta(hours=hours)
        self._catch_up()

    @precondition(lambda self: self.sub.status is Status.ACTIVE)
    @rule(n=st.integers(1, 5000))
    def usage(self, n: int) -> None:
        key = self.sub.period(self.now).start
        self.counters[key] = self.counters.get(key, 0) + n

    @precondition(lambda self: self.sub.status is Status.ACTIVE and self.sub.cancel_at is None)
    @rule(plan=st.sampled_from(PLANS), pays=st.booleans())
    def change_now(self, plan: Plan, pays: bool) -> None:
        if plan.id == self.sub.plan.id or plan.price.currency != self.sub.plan.price.currency:
            return  # refused (409)
        period = self.sub.period(self.now)
        counter = self.counters.get(period.start, 0)
        draft, _, rest = ledger.change(self._running(period), plan, self.now, counter, self.credits)
        if draft.total.amount > 0 and not pays:
            return  # R8: a failed charge changes nothing and leaves no invoice
        stored = self.segments[period.start]
        running = self._running(period)
        if running.start == self.now:  # a segment of no length: the new plan takes it over
            stored[stored.index(running)] = ledger.opened(period, plan, self.now, running.units_at_start)
        else:
            ended = running.ended(self.now, counter)
            stored[stored.index(running)] = ended
            self._close(period, [ended], f"pr_{len(self.invoices)}")
            stored.append(ledger.opened(period, plan, self.now, counter))
        self.fees[period.start] += ledger.change_fee(self.sub.plan, plan, period, self.now)
        self.credits = rest if draft.total.amount >= 0 else ledger.add_credit(
            rest, Money(-draft.total.amount, draft.currency))
        self._invoice(period, draft, "proration", status="paid")
        self.sub = dataclasses.replace(self.sub, plan=plan, pending=None)

    @precondition(lambda self: self.sub.status is Status.ACTIVE and self.sub.cancel_at is None)
    @rule(plan=st.sampled_from(PLANS), days=st.one_of(st.none(), st.integers(1, 365)))
    def schedule(self, plan: Plan, days: int | None) -> None:
        if plan.id == self.sub.plan.id or plan.price.currency != self.sub.plan.price.currency:
            return
        moment = self.sub.period(self.now).end if days is None else datetime.combine(
            (self.now + timedelta(days=days)).date(), datetime.min.time(), tzinfo=UTC)
        self.sub = dataclasses.replace(self.sub, pending=PlanChange(plan, moment))

    @precondition(lambda self: self.sub.status is Status.ACTIVE)
    @rule()
    def cancel(self) -> None:
        self.sub = dataclasses.replace(self.sub, cancel_at=self.sub.period(self.now).end, pending=None)

    @precondition(lambda self: self.sub.status is Status.ACTIVE and self.sub.cancel_at is not None)
    @rule()
    def resume(self) -> None:
        self.sub = dataclasses.replace(self.sub, cancel_at=None)

    @precondition(lambda self: self.sub.status is Status.ACTIVE and self.sub.payment_failed_at is None
                  and any(i["status"] == "open" for i in self.invoices))
    @rule()
    def payment_fails(self) -> None:
        self.sub = dataclasses.replace(self.sub, payment_failed_at=self.now, grace_ends_at=self.now + timedelta(days=7))

    @precondition(lambda self: any(i["status"] == "open" for i in self.invoices))
    @rule(data=st.data())
    def pays_late(self, data) -> None:
        unpaid = [i for i in self.invoices if i["status"] == "open"]
        data.draw(st.sampled_from(unpaid))["status"] = "paid"
        if self.sub.status is Status.ACTIVE and not any(i["status"] == "open" for i in self.invoices):
            self.sub = dataclasses.replace(self.sub, payment_failed_at=None, grace_ends_at=None)

    @precondition(lambda self: self.sub.status is not Status.ACTIVE
                  and not any(i["status"] == "open" for i in self.invoices))
    @rule(plan=st.sampled_from(PLANS))
    def subscribes_again(self, plan: Plan) -> None:
        self.sub = start_plan(self.sub, plan, self.now, used=0)
        period = self.sub.period(self.now)
        self.billed_until = period.end
        self.fees[period.start] = plan.price.amount
        self.segments[period.start] = [ledger.opened(period, plan, self.now, 0)]

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def every_ended_period_is_closed_once_and_priced_by_its_segments(self) -> None:
        for start, segs in self.segments.items():
            period = segs[0].period
            if period.end > self.now:
                continue
            assert all(s.closed_by is not None for s in segs), f"the period from {start} ended unclosed"
            assert sum(s.units for s in segs) == self.counters.get(start, 0)  # every unit in one segment
            expected = sum(max(0, s.units - brute_allowance(s)) * s.plan.overage_price.amount for s in segs)
            assert self.extras.get(start, 0) == expected
            assert self.fees[start] == sum(ledger.segment_fee(s) for s in segs)

    @invariant()
    def no_debt_disappears_and_credit_never_crosses_a_currency(self) -> None:
        assert self.voided_debt == 0 and all(i["status"] in ("open", "paid") for i in self.invoices)
        for inv in self.invoices:
            credit = -sum(line.amount for line in inv["lines"] if line.description == ledger.CREDIT_LINE)
            assert credit <= sum(line.amount for line in inv["lines"] if line.amount > 0)
            assert inv["total"] >= 0 or not credit
        assert all(v > 0 and len(k) == 3 for k, v in self.credits.items())


Books.TestCase.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)
TestLedgerHistories = Books.TestCase
