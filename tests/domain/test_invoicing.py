"""Invoices: the renewal charges the price plus last period's extra sessions; changes are prorated."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentbilling.catalog import load_catalog
from agentbilling.domain.invoicing import overage_sessions, proration, renewal
from agentbilling.domain.periods import period_at

CATALOG = load_catalog()
ANCHOR = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)
FEB = period_at(ANCHOR, datetime(2026, 2, 28, 9, 0, tzinfo=UTC))


def test_a_starter_renewal_within_the_included_sessions_is_the_price_alone():
    invoice = renewal(CATALOG["starter"], used_last_period=500, new_period=FEB)
    assert [line.amount for line in invoice.lines] == [4900]
    assert invoice.total.amount == 4900 and invoice.total.currency == "USD"


def test_sessions_beyond_the_included_are_charged_at_the_plan_price():
    invoice = renewal(CATALOG["starter"], used_last_period=1000, new_period=FEB)
    assert invoice.lines[1].quantity == 500 and invoice.lines[1].unit_amount == 12
    assert invoice.total.amount == 4900 + 6000  # "at most $60 more" at the base limit of 1,000


@given(st.integers(min_value=0, max_value=10**6))
def test_renewal_total_is_price_plus_extra_times_overage(used):
    plan = CATALOG["growth"]
    total = renewal(plan, used_last_period=used, new_period=FEB).total.amount
    assert total == plan.price.amount + overage_sessions(plan, used) * plan.overage_price.amount


def test_enterprise_without_terms_has_nothing_to_invoice():
    with pytest.raises(ValueError):
        renewal(CATALOG["enterprise"], used_last_period=0, new_period=FEB)


def test_an_upgrade_halfway_through_a_period_charges_half_the_difference():
    period = period_at(datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 4, 16, tzinfo=UTC))  # 30 days
    invoice = proration(CATALOG["starter"], CATALOG["growth"], period=period, now=datetime(2026, 4, 16, tzinfo=UTC))
    assert invoice.total.amount == (19900 - 4900) // 2


@given(st.integers(min_value=0, max_value=27 * 86400))
def test_proration_is_between_zero_and_the_full_difference_and_a_downgrade_is_a_credit(seconds):
    now = FEB.start + timedelta(seconds=seconds)
    up = proration(CATALOG["starter"], CATALOG["scale"], period=FEB, now=now).total.amount
    down = proration(CATALOG["scale"], CATALOG["starter"], period=FEB, now=now).total.amount
    assert 0 <= up <= 79900 - 4900
    assert down == -up or abs(down + up) <= 1


def test_a_change_is_prorated_unless_scheduled_for_the_period_start_or_across_currencies():
    from agentbilling.domain.invoicing import prorate_change
    from agentbilling.domain.money import Money
    from agentbilling.domain.periods import period_at
    from tests.domain.support import GROWTH, STARTER, T0
    import dataclasses

    period = period_at(T0, T0)
    assert prorate_change(STARTER, GROWTH, period=period, at=T0, scheduled=True) is None
    assert prorate_change(STARTER, GROWTH, period=period, at=T0).total.amount == 19900 - 4900  # immediately
    euro = dataclasses.replace(GROWTH, price=Money(19900, "EUR"))
    assert prorate_change(STARTER, euro, period=period, at=T0) is None
    mid = period.start + (period.end - period.start) / 2
    assert prorate_change(GROWTH, STARTER, period=period, at=mid, scheduled=True).total.amount == -7500
