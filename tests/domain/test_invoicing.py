"""Invoices: the fee of a period, the fee difference of a change (domain/ledger.py), lines and totals."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentbilling.catalog import load_catalog
from agentbilling.domain import ledger
from agentbilling.domain.invoicing import InvoiceDraft, InvoiceLine
from agentbilling.domain.money import Money
from agentbilling.domain.periods import period_at

CATALOG = load_catalog()
ANCHOR = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)
FEB = period_at(ANCHOR, datetime(2026, 2, 28, 9, 0, tzinfo=UTC))


def test_a_starter_renewal_within_the_included_sessions_is_the_price_alone():
    closed = [ledger.opened(FEB, CATALOG["starter"], FEB.start, 0).ended(FEB.end, 500)]
    invoice, _ = ledger.renewal(CATALOG["starter"], FEB, closed, {})
    assert [line.amount for line in invoice.lines] == [4900]
    assert invoice.total == Money(4900, "USD")


def test_sessions_beyond_the_included_are_charged_at_the_plan_price():
    closed = ledger.closing([ledger.opened(FEB, CATALOG["starter"], FEB.start, 0)], 1000)
    invoice, _ = ledger.renewal(CATALOG["starter"], FEB, closed, {})
    assert invoice.lines[1].quantity == 500 and invoice.lines[1].unit_amount == 12
    assert invoice.total.amount == 4900 + 6000  # "at most $60 more" at the base limit of 1,000


@given(st.integers(min_value=0, max_value=10**6))
def test_renewal_total_is_price_plus_extra_times_overage(used):
    plan = CATALOG["growth"]
    closed = ledger.closing([ledger.opened(FEB, plan, FEB.start, 0)], used)
    total = ledger.renewal(plan, FEB, closed, {})[0].total.amount
    assert total == plan.price.amount + max(0, used - plan.included_sessions) * plan.overage_price.amount


def test_enterprise_without_terms_has_nothing_to_invoice():
    with pytest.raises(ValueError):
        ledger.renewal(CATALOG["enterprise"], FEB, [], {})


def test_an_upgrade_halfway_through_a_period_charges_half_the_difference():
    period = period_at(datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 4, 16, tzinfo=UTC))  # 30 days
    fee = ledger.change_fee(CATALOG["starter"], CATALOG["growth"], period, datetime(2026, 4, 16, tzinfo=UTC))
    assert fee == (19900 - 4900) // 2


@given(st.integers(min_value=0, max_value=27 * 86400))
def test_a_change_fee_is_between_zero_and_the_full_difference_and_a_downgrade_is_a_credit(seconds):
    now = FEB.start + timedelta(seconds=seconds)
    up = ledger.change_fee(CATALOG["starter"], CATALOG["scale"], FEB, now)
    down = ledger.change_fee(CATALOG["scale"], CATALOG["starter"], FEB, now)
    assert 0 <= up <= 79900 - 4900
    assert down == -up  # each share is rounded once: there and back costs nothing


def test_a_draft_totals_its_lines_in_its_currency():
    draft = InvoiceDraft("EUR", (InvoiceLine("a", 1, 900, 900), InvoiceLine("credit", 1, -100, -100)))
    assert draft.total == Money(800, "EUR")
