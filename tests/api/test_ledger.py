"""The ledger over HTTP (R8, R8a, R10): each way a review found to get paid service without paying,
replayed through the sandbox and the test clock, now billed as the rules say.

The small catalog of tests/support/subscribing.py: Mini $10.00 (2 included, $1.00 each beyond, base
limit 3, highest 10), Maxi $30.00 (5 included, $0.50), Euro €9.00. The first period runs from
Jan 31 09:00 to Feb 28 09:00 (28 days), the second to Mar 31 09:00.
"""

from __future__ import annotations

from sqlalchemy import select

from agentbilling.storage.tables import segments
from tests.support.concurrency import at_once
from tests.support.http import assert_problem, card, view
from tests.support.service import operator_headers
from tests.support.subscribing import (  # noqa: F401 (settings and acme are fixtures)
    CARD_CHARGES_FAIL,
    CARD_OK,
    PAYMENT_OVERDUE,
    acme,
    add_card,
    badges,
    change_plan,
    checkout,
    fill,
    invoices,
    portal_action,
    refused,
    settings,
    subscribe,
)
from tests.support.tenants import advance, setup_tenant

FEB_28 = "2026-02-28T09:00:00Z"
MAR_31 = "2026-03-31T09:00:00Z"


def set_limit(client, access, limit: int) -> None:
    r = client.put("/v1/billing/session-limit", json={"limit": limit}, headers=access.owner_headers)
    assert r.status_code == 200, r.text


def of_kind(client, access, kind: str) -> list[dict]:
    return [i for i in invoices(client, access) if i["kind"] == kind]


def test_debt_is_not_forgiven_at_lapse_and_a_new_checkout_does_not_start_clean(client, acme):
    """Finding 1: a renewal left unpaid through grace and the period's end stays owed; Subscribe is
    refused (409 balance-due, with a link to pay) until it is paid; a late payment is applied."""
    subscribe(client, acme, "mini")
    add_card(client, "acme", CARD_CHARGES_FAIL)
    fill(client, acme, "jan", 3)  # 1 beyond the 2 included
    advance(client, to=FEB_28)
    assert badges(client, acme) == ["Payment issue"]
    advance(client, to="2026-03-07T09:00:00Z")
    refused(client, acme, "overdue", "payment-overdue", PAYMENT_OVERDUE)
    advance(client, to=MAR_31)
    assert badges(client, acme) == ["Expired subscription"]
    (renewal,) = of_kind(client, acme, "renewal")
    assert (renewal["status"], renewal["total"]["amount"]) == ("open", 1000 + 100)
    v = view(client, acme)
    assert v["balance_due"] == {"amount": 1100, "currency": "USD", "display": "$11.00"}
    assert v["banners"][-1]["title"] == "Balance due" and "$11.00" in v["banners"][-1]["text"]

    problem = assert_problem(checkout(client, acme, "mini"), 409, "balance-due")
    assert "/sandbox/portal/" in problem["pay_url"]
    assert problem["balance_due"] == [{"amount": 1100, "currency": "USD"}]

    assert add_card(client, "acme", CARD_OK).status_code == 200  # paid late, in the portal
    assert of_kind(client, acme, "renewal")[0]["status"] == "paid"
    assert view(client, acme)["balance_due"] is None
    assert badges(client, acme) == ["Expired subscription"]  # a late payment restarts nothing
    subscribe(client, acme, "mini")
    assert badges(client, acme) == ["Active subscription"]


def test_an_immediate_upgrade_does_not_run_before_it_is_paid(client, acme):
    """Finding 2: an upgrade whose charge fails is a 402 that changes nothing and leaves no open
    invoice, however often it is asked; once the card works it runs at once."""
    subscribe(client, acme, "mini")
    add_card(client, "acme", CARD_CHARGES_FAIL)
    before = view(client, acme)
    for _ in range(3):
        assert_problem(change_plan(client, acme, "maxi", "immediately"), 402, "payment-failed")
        assert view(client, acme) == before
        assert card(client, acme)["plan"]["id"] == "mini"
        assert view(client, acme)["session_limit"]["limit"] == 3
        assert [i for i in invoices(client, acme) if i["status"] == "open"] == []
    assert badges(client, acme) == ["Active subscription"]  # no payment issue from a refused upgrade

    add_card(client, "acme", CARD_OK)
    r = change_plan(client, acme, "maxi", "immediately")
    assert r.status_code == 200, r.text
    assert r.json()["cards"][0]["plan"]["id"] == "maxi" and r.json()["session_limit"]["limit"] == 6
    assert sorted(i["status"] for i in of_kind(client, acme, "proration")) == ["paid", "void", "void", "void"]


def test_the_last_periods_overage_is_billed_when_the_plan_is_cancelled(client):
    """Finding 3: two Mini tenants with 3 sessions each (1 beyond the included), one cancelled: both
    pay for the extra session, one on its renewal, the other on a final invoice."""
    kept, cancelled = setup_tenant(client, "kept"), setup_tenant(client, "gone")
    for access in (kept, cancelled):
        subscribe(client, access, "mini")
        fill(client, access, "s", 3)
    portal_action(client, "gone", "cancel")
    advance(client, to=FEB_28)
    (renewal,) = of_kind(client, kept, "renewal")
    assert renewal["total"]["amount"] == 1000 + 100
    (final,) = of_kind(client, cancelled, "final")
    assert (final["total"]["amount"], final["status"]) == (100, "paid")
    assert final["lines"][0]["description"] == "1 sessions beyond the 2 included"
    assert of_kind(client, cancelled, "renewal") == []
    advance(client, to=MAR_31)
    assert len(of_kind(client, cancelled, "final")) == 1  # closed once


def test_the_last_periods_overage_is_billed_when_an_offline_deal_replaces_the_plan(client, acme):
    subscribe(client, acme, "mini")
    fill(client, acme, "s", 3)
    advance(client, to="2026-02-14T09:00:00Z")
    r = client.put("/v1/tenants/acme/subscription", json={"plan_id": "enterprise"}, headers=operator_headers())
    assert r.status_code == 200, r.text
    (final,) = of_kind(client, acme, "final")
    assert final["total"]["amount"] == 100  # the replaced plan's allowance ran to its period's end
    advance(client, to=MAR_31)
    assert len(of_kind(client, acme, "final")) == 1


def test_upgrading_just_before_the_period_ends_still_bills_the_periods_overage(client, billing, acme):
    """Finding 4: Mini with 10 sessions (8 beyond the 2 included) upgrades an hour before the
    renewal: the upgrade's invoice closes Mini's segment with its extras; switching back right
    after credits only the fee difference for what is left, never the overage."""
    subscribe(client, acme, "mini")
    set_limit(client, acme, 10)
    fill(client, acme, "s", 10)
    advance(client, to="2026-02-28T08:00:00Z")
    assert change_plan(client, acme, "maxi", "immediately").status_code == 200
    (up,) = of_kind(client, acme, "proration")
    extras = [x for x in up["lines"] if "beyond" in x["description"]]
    assert [(x["quantity"], x["amount"]["amount"]) for x in extras] == [(9, 900)]  # floor(2 x 671/672) = 1
    advance(client, seconds=60)
    assert change_plan(client, acme, "mini", "immediately").status_code == 200
    back = next(i for i in of_kind(client, acme, "proration") if i["id"] != up["id"])
    assert -back["total"]["amount"] < 2000 * 60 / (28 * 24 * 60) + 1  # under a cent of fee difference per minute
    advance(client, to=FEB_28)
    billed = sum(i["total"]["amount"] for i in invoices(client, acme) if i["status"] == "paid")
    # What the rules say the period costs: Mini's fee, 8+1 extras... at least the 8 beyond Mini's
    # whole-period allowance, and the next period's fee.
    assert billed >= 1000 + 800 + 1000
    with billing.db.read() as conn:
        rows = conn.execute(select(segments.c.plan_id, segments.c.units, segments.c.closed_by)
                            .where(segments.c.tenant_id == "acme").order_by(segments.c.start_at)).all()
    # The first period's three segments (Mini, Maxi for a minute, Mini), each closed; the next one's runs.
    assert [(r.plan_id, r.units, r.closed_by is not None) for r in rows] == [
        ("mini", 10, True), ("maxi", 0, True), ("mini", 0, True), ("mini", None, False)]


def test_credit_has_a_currency(client, billing, acme):
    """Finding 5: a USD credit (from a downgrade) stays in USD: it never pays a EUR invoice, and the
    billing view lists it; a change into another currency is refused whatever its mode."""
    subscribe(client, acme, "maxi")
    advance(client, to="2026-02-14T09:00:00Z")
    assert change_plan(client, acme, "mini", "immediately").status_code == 200
    credit = view(client, acme)["credit_balances"]
    assert [c["currency"] for c in credit] == ["USD"] and credit[0]["amount"] == 1000  # ($30 - $10) x 14/28
    for when, date in (("immediately", None), ("end_of_period", None), ("custom_date", "2026-02-20")):
        assert_problem(change_plan(client, acme, "euro", when, date), 409, "currency-mismatch")
    portal_action(client, "acme", "cancel")
    advance(client, to=FEB_28)
    subscribe(client, acme, "euro")
    advance(client, to=MAR_31)
    (renewal,) = [i for i in of_kind(client, acme, "renewal") if i["total"]["currency"] == "EUR"]
    assert renewal["total"]["amount"] == 900  # no USD credit on it
    assert view(client, acme)["credit_balances"] == [{"amount": 1000, "currency": "USD", "display": "$10.00"}]


def portal_page(client, access) -> str:
    url = client.post("/v1/billing/portal", headers=access.owner_headers).json()["url"]
    r = client.get(url.replace(str(client.base_url), ""))
    assert r.status_code == 200, r.text
    return r.text


def test_the_portal_shows_the_credit_per_currency_and_the_balance_due(client, acme):
    subscribe(client, acme, "maxi")
    advance(client, to="2026-02-14T09:00:00Z")
    assert change_plan(client, acme, "mini", "immediately").status_code == 200  # ($30 - $10) x 14/28
    page = portal_page(client, acme)
    assert "Credit (USD)" in page and "$10.00" in page and "Balance due" not in page

    add_card(client, "acme", CARD_CHARGES_FAIL)
    advance(client, to=MAR_31)  # the renewal ($10.00 less the $10.00 credit) is paid; the next one fails
    advance(client, to="2026-04-30T09:00:00Z")  # unpaid through its period: Expired, and owed
    v = view(client, acme)
    assert v["balance_due"]["display"] == "$10.00" and v["credit_balances"] == []
    page = portal_page(client, acme)
    assert "Balance due" in page and "$10.00" in page and "Credit (USD)" not in page


def test_many_workers_at_once_close_each_period_once(client, billing):
    """Six workers at a time, three rounds, after the period's end of a cancelled plan, a plan with a
    change that came due mid-period and a plain one: one final invoice, one renewal each, and every
    segment closed once with its extras billed once."""
    from datetime import UTC, datetime

    tenants = [setup_tenant(client, f"w{i}") for i in range(3)]
    for access in tenants:
        subscribe(client, access, "mini")
        fill(client, access, "s", 3)
    portal_action(client, "w0", "cancel")
    assert change_plan(client, tenants[1], "maxi", "custom_date", "2026-02-14").status_code == 200
    moment = datetime(2026, 2, 28, 9, 0, 1, tzinfo=UTC)
    billing.test_clock.set(moment)  # time passed; no worker has run yet
    for _ in range(3):
        assert at_once(6, lambda: billing.lifecycle.run_due(moment)) == []
    kinds = {a.id: sorted(i["kind"] for i in invoices(client, a)) for a in tenants}
    assert kinds == {"w0": ["final", "first"], "w1": ["first", "proration", "renewal"], "w2": ["first", "renewal"]}
    extras = {a.id: sum(x["amount"]["amount"] for i in invoices(client, a) for x in i["lines"]
                        if "beyond" in x["description"]) for a in tenants}
    # w1: Mini until Feb 14 00:00 (327 of 672 hours, so none included): 3 extras; Maxi after: none.
    assert extras == {"w0": 100, "w1": 300, "w2": 100}
    with billing.db.read() as conn:
        rows = conn.execute(select(segments.c.tenant_id, segments.c.closed_by)
                            .where(segments.c.period_start == datetime(2026, 1, 31, 9, tzinfo=UTC))).all()
    assert sorted(t for t, _ in rows) == ["w0", "w1", "w1", "w2"] and all(c for _, c in rows)
