"""Plain objects and hypothesis strategies shared by the domain tests (no database, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st

from agentbilling.domain.money import Money
from agentbilling.domain.plans import Plan
from agentbilling.domain.subscription import Status, Subscription
from agentbilling.domain.trial import Trial

T0 = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)  # a Jan 31 anchor exercises short months
DAY = timedelta(days=1)
US = timedelta(microseconds=1)


def usd(cents: int) -> Money:
    return Money(cents, "USD")


# The DESIGN.md default catalog (R7), built as plain objects.
STARTER = Plan(
    id="starter", name="Starter", price=usd(4900), included_sessions=500, overage_price=usd(12),
    base_session_limit=1000, max_session_limit=5000,
)
GROWTH = Plan(
    id="growth", name="Growth", price=usd(19900), included_sessions=2500, overage_price=usd(9),
    base_session_limit=5000, max_session_limit=25000,
)
OUTREACH = Plan(
    id="outreach", name="Outreach", price=usd(14900), included_sessions=2000, overage_price=usd(10),
    base_session_limit=4000, max_session_limit=20000, answered_only=True,
)
UNCAPPED = Plan(id="uncapped", name="Uncapped", price=usd(100))  # no base limit, no highest limit


def trial_sub(start: datetime = T0, *, days: int = 14, sessions: int = 50) -> Subscription:
    return Subscription("acme", Status.TRIALING, Trial.start(start, days=days, sessions=sessions))


def paid_sub(
    plan: Plan = STARTER, anchor: datetime = T0, *, status: Status = Status.ACTIVE, custom_limit: int | None = None
) -> Subscription:
    trial = Trial.start(anchor - 14 * DAY, days=14, sessions=50)
    return Subscription("acme", status, trial, plan=plan, anchor=anchor, custom_limit=custom_limit)


# Aware UTC instants over a range that crosses many leap years and month ends.
moments = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400))

# Property tests stay fast (the whole folder runs in a few seconds) and never flake on a slow,
# shared machine: fewer examples than hypothesis's default, no per-example deadline.
fast = settings(max_examples=50, deadline=None)
