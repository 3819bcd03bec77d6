"""Money, plans, negotiated terms and the catalog as plain objects (R7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentbilling.domain.money import Money
from agentbilling.domain.plans import ANSWERED_ONLY, Catalog, Plan, Terms
from tests.support.domain import GROWTH, OUTREACH, STARTER, fast, usd


def test_money_is_integer_minor_units_with_an_iso_currency():
    assert Money(4900, "USD").amount == 4900
    for amount in (49.0, True, "4900"):
        with pytest.raises(ValueError, match="minor units"):
            Money(amount, "USD")
    for currency in ("usd", "US", "USDX", "U5D"):
        with pytest.raises(ValueError, match="ISO 4217"):
            Money(1, currency)


@fast
@given(amount=st.integers(0, 10**9), n=st.integers(0, 10**6))
def test_money_times(amount, n):
    assert Money(amount, "EUR").times(n) == Money(amount * n, "EUR")


def test_answered_only_tag():
    assert ANSWERED_ONLY == "Answered only"
    assert OUTREACH.tags == ("Answered only",)
    assert STARTER.tags == ()


def test_availability():
    private = Plan(id="p", name="P", price=usd(1), available_to=frozenset({"acme"}))
    assert private.available_for("acme") and not private.available_for("globex")
    assert STARTER.available_for("anyone")


def test_with_terms_overrides_only_the_fields_given():
    enterprise = Plan(id="enterprise", name="Enterprise", price=None, enterprise=True)
    deal = enterprise.with_terms(Terms(price=usd(250000), included_sessions=50000, max_session_limit=90000))
    assert deal.price == usd(250000)
    assert deal.included_sessions == 50000
    assert deal.max_session_limit == 90000
    assert deal.base_session_limit is None  # not given: the plan's
    assert deal.enterprise and deal.id == "enterprise"
    assert enterprise.price is None  # the catalog plan is unchanged
    assert STARTER.with_terms(None) is STARTER
    assert STARTER.with_terms(Terms()) == STARTER


def test_catalog_keeps_the_order_and_refuses_duplicates():
    private = Plan(id="private", name="Private", price=usd(1), available_to=frozenset({"acme"}))
    catalog = Catalog([GROWTH, STARTER, private])
    assert list(catalog) == ["growth", "starter", "private"]
    assert catalog["starter"] is STARTER
    assert "scale" not in catalog
    assert catalog.available_for("acme") == [GROWTH, STARTER, private]
    assert catalog.available_for("globex") == [GROWTH, STARTER]
    with pytest.raises(ValueError, match="'starter' appears twice"):
        Catalog([STARTER, STARTER])
