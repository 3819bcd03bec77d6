"""Plan changes (R8): allowed targets and when a change applies."""

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentbilling.catalog import load_catalog
from agentbilling.domain.errors import Conflict, InvalidInput, NotFound
from agentbilling.domain.periods import period_at
from agentbilling.domain.plan_change import When, check_target, effective_at

CATALOG = load_catalog()
NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
PERIOD = period_at(datetime(2026, 1, 31, 9, 0, tzinfo=UTC), NOW)


def test_immediately_applies_now_and_end_of_period_at_the_period_end():
    assert effective_at(When.IMMEDIATELY, now=NOW, period=PERIOD) == NOW
    assert effective_at(When.END_OF_PERIOD, now=NOW, period=PERIOD) == datetime(2026, 3, 31, 9, 0, tzinfo=UTC)


def test_a_custom_date_takes_effect_at_midnight_utc():
    assert effective_at(When.CUSTOM_DATE, now=NOW, period=PERIOD, custom=date(2026, 4, 2)) == datetime(
        2026, 4, 2, tzinfo=UTC
    )


@pytest.mark.parametrize("custom", [date(2026, 3, 10), date(2026, 3, 9), date(2020, 1, 1)])
def test_a_custom_date_today_or_earlier_is_refused(custom):
    with pytest.raises(InvalidInput, match="not in the future"):
        effective_at(When.CUSTOM_DATE, now=NOW, period=PERIOD, custom=custom)


def test_a_custom_date_needs_a_date_and_at_most_a_year_ahead():
    with pytest.raises(InvalidInput, match="needs a date"):
        effective_at(When.CUSTOM_DATE, now=NOW, period=PERIOD)
    with pytest.raises(InvalidInput, match="more than a year"):
        effective_at(When.CUSTOM_DATE, now=NOW, period=PERIOD, custom=date(2027, 3, 12))
    assert effective_at(When.CUSTOM_DATE, now=NOW, period=PERIOD, custom=date(2027, 3, 10))


@given(st.integers(min_value=1, max_value=365))
def test_every_future_date_within_a_year_is_accepted_and_lands_at_midnight(days):
    custom = NOW.date() + timedelta(days=days)
    moment = effective_at(When.CUSTOM_DATE, now=NOW, period=PERIOD, custom=custom)
    assert moment > NOW and (moment.hour, moment.minute, moment.tzinfo) == (0, 0, UTC)


def test_targets_must_be_another_portal_plan_offered_to_the_tenant():
    starter = CATALOG["starter"]
    check_target("acme", starter, CATALOG["growth"])
    with pytest.raises(Conflict, match="already on the Starter plan"):
        check_target("acme", starter, starter)
    with pytest.raises(InvalidInput, match="Book a demo"):
        check_target("acme", starter, CATALOG["enterprise"])
    private = CATALOG["growth"].__class__(id="vip", name="VIP", price=starter.price, available_to=frozenset({"b"}))
    with pytest.raises(NotFound):
        check_target("acme", starter, private)
