"""Whole subscription lifecycles through the HTTP API and the sandbox portal, on the test clock:
subscribe, change plan (R8), renew and fail to pay (R10), cancel (R11), Book a demo; the card's
badges (R12) at every step. The service learns every payment outcome only through the sandbox's
signed webhooks."""

from __future__ import annotations

import pytest

from tests.support.http import (
    LIMIT_REACHED,
    PAYMENT_OVERDUE_HELP,
    SUBSCRIPTION_ENDED,
    assert_problem,
    card,
    view,
)
from tests.support.service import operator_headers
from tests.support.subscribing import (  # noqa: F401 (settings and acme are fixtures)
    CARD_CHARGES_FAIL,
    CARD_DECLINED,
    CARD_OK,
    PAYMENT_OVERDUE,
    acme,
    add_card,
    admitted,
    badges,
    change_plan,
    checkout,
    complete,
    fill,
    invoices,
    portal_action,
    refused,
    settings,
    subscribe,
)
from tests.support.tenants import advance, open_session, setup_tenant

# START is Jan 31 09:00 UTC: a plan subscribed then renews Feb 28, Mar 31, Apr 30 at 09:00.
FEB_28 = "2026-02-28T09:00:00Z"
MAR_31 = "2026-03-31T09:00:00Z"
APR_30 = "2026-04-30T09:00:00Z"


# -- subscribe ---------------------------------------------------------------------------------


def test_subscribing_ends_the_trial_and_starts_the_plan_with_its_first_invoice_paid(client, acme):
    assert card(client, acme)["badge"] == "Trial subscription"
    v = subscribe(client, acme, "mini")
    (c,) = v["cards"]
    assert c["badge"] == "Active subscription"
    assert c["plan"]["id"] == "mini"
    assert c["next_billing_date"] == "2026-02-28"
    assert c["trial_sessions_left"] is None and c["trial_days_left"] is None
    assert v["session_limit"]["limit"] == 3
    (inv,) = invoices(client, acme)
    assert (inv["kind"], inv["status"], inv["total"]) == ("first", "paid", {"amount": 1000, "currency": "USD"})


def test_a_declined_card_at_checkout_changes_nothing(client, acme):
    co = checkout(client, acme, "mini").json()
    for card_number in (CARD_DECLINED, CARD_CHARGES_FAIL):
        assert_problem(complete(client, co["id"], card_number), 402, "card-declined")
    assert card(client, acme)["badge"] == "Trial subscription"
    assert invoices(client, acme) == []
    assert complete(client, co["id"], CARD_OK).status_code == 200  # the same checkout can still be paid
    assert card(client, acme)["badge"] == "Active subscription"
    assert_problem(complete(client, co["id"], CARD_OK), 409)  # but only once


def test_the_plans_section_offers_only_the_plans_available_to_the_tenant(client, acme):
    ids = [p["id"] for p in view(client, acme)["plans"]]
    assert "vip" not in ids and "mini" in ids and "enterprise" in ids
    assert_problem(checkout(client, acme, "vip"), 404)


def test_an_expired_trial_subscribes_and_is_admitted_again(client, acme):
    advance(client, seconds=15 * 86400)
    refused(client, acme, "late", "subscription-ended", SUBSCRIPTION_ENDED)
    subscribe(client, acme, "mini")
    admitted(client, acme, "late")


# -- plan changes (R8) -------------------------------------------------------------------------


def test_an_immediate_upgrade_while_stopped_at_the_limit_admits_at_once_and_charges_the_difference(client, acme):
    subscribe(client, acme, "mini")
    fill(client, acme, "s", 3)
    refused(client, acme, "stopped", "session-limit-reached", LIMIT_REACHED)
    advance(client, seconds=14 * 86400)  # half way through the 28-day period

    r = change_plan(client, acme, "maxi", "immediately")
    assert r.status_code == 200, r.text
    (c,) = r.json()["cards"]
    assert c["badge"] == "Active subscription" and c["plan"]["id"] == "maxi"
    assert c["next_billing_date"] == "2026-02-28"  # a change does not restart the period
    assert r.json()["session_limit"]["limit"] == 6
    admitted(client, acme, "stopped")

    proration = invoices(client, acme)[0]
    assert proration["kind"] == "proration" and proration["status"] == "paid"
    # ($30 - $10) x 14/28 days, and Mini's segment closed on it (R8a): 3 sessions, 1 included in
    # its half period (floor(2 x 14/28)), so 2 extras x $1.00.
    assert proration["total"] == {"amount": 1000 + 200, "currency": "USD"}


def test_a_downgrade_at_the_end_of_the_period_shows_upcoming_then_applies_with_the_renewal(client, acme):
    subscribe(client, acme, "maxi")
    fill(client, acme, "s", 5)
    r = change_plan(client, acme, "mini", "end_of_period")
    assert r.status_code == 200, r.text
    current, upcoming = r.json()["cards"]
    assert current["badge"] == "Active subscription" and current["plan"]["id"] == "maxi"
    assert upcoming["badge"] == "Upcoming subscription"
    assert upcoming["plan"]["id"] == "mini" and upcoming["starts_on"] == "2026-02-28"
    assert r.json()["session_limit"]["limit"] == 6  # the old plan's limits until then

    advance(client, to=FEB_28)
    v = view(client, acme)
    assert [c["badge"] for c in v["cards"]] == ["Active subscription"]
    assert v["cards"][0]["plan"]["id"] == "mini" and v["session_limit"]["limit"] == 3
    renewal = invoices(client, acme)[0]
    assert renewal["kind"] == "renewal" and renewal["status"] == "paid"
    # The new plan's price for the new period; the old plan's usage was within what it included.
    assert renewal["total"] == {"amount": 1000, "currency": "USD"}


def test_a_change_on_a_custom_date_applies_at_midnight_utc_of_that_day(client, acme):
    subscribe(client, acme, "mini")
    r = change_plan(client, acme, "maxi", "custom_date", "2026-02-10")
    assert r.status_code == 200, r.text
    assert r.json()["cards"][1]["starts_on"] == "2026-02-10"
    advance(client, to="2026-02-09T23:59:59Z")
    assert card(client, acme)["plan"]["id"] == "mini"
    advance(client, to="2026-02-10T00:00:00Z")
    assert badges(client, acme) == ["Active subscription"]
    assert card(client, acme)["plan"]["id"] == "maxi"
    assert view(client, acme)["session_limit"]["limit"] == 6


def test_cancel_scheduled_plan_removes_the_upcoming_card_and_a_new_change_replaces_the_pending_one(client, acme):
    subscribe(client, acme, "mini")
    assert change_plan(client, acme, "maxi", "end_of_period").status_code == 200
    r = change_plan(client, acme, "reach", "custom_date", "2026-02-20")  # at most one pending: replaces
    assert [c["plan"]["id"] for c in r.json()["cards"]] == ["mini", "reach"]
    r = client.delete("/v1/billing/plan-change", headers=acme.owner_headers)
    assert r.status_code == 200, r.text
    assert [c["badge"] for c in r.json()["cards"]] == ["Active subscription"]
    assert_problem(client.delete("/v1/billing/plan-change", headers=acme.owner_headers), 409)
    advance(client, to=FEB_28)
    assert card(client, acme)["plan"]["id"] == "mini"


def test_a_custom_limit_is_kept_through_a_change_lowered_to_the_new_plans_highest(client, acme):
    subscribe(client, acme, "maxi")
    assert client.put("/v1/billing/session-limit", json={"limit": 15}, headers=acme.owner_headers).status_code == 200
    r = change_plan(client, acme, "mini", "immediately")
    assert r.json()["session_limit"] == {"limit": 10, "base_limit": 3, "used": 0, "custom": True, "warning": None}


@pytest.mark.parametrize(("body", "status"), [
    ({"plan_id": "nope", "when": "immediately"}, 404),
    ({"plan_id": "vip", "when": "immediately"}, 404),  # not offered to this tenant
    ({"plan_id": "mini", "when": "immediately"}, 409),  # the current plan
    ({"plan_id": "enterprise", "when": "immediately"}, 422),
    ({"plan_id": "maxi", "when": "someday"}, 422),
    ({"plan_id": "maxi", "when": "custom_date"}, 422),  # no date
    ({"plan_id": "maxi", "when": "custom_date", "date": "2026-01-30"}, 422),  # past
    ({"plan_id": "maxi", "when": "custom_date", "date": "2026-01-31"}, 422),  # today's midnight has passed
    ({"plan_id": "maxi", "when": "custom_date", "date": "2027-03-01"}, 422),  # more than a year ahead
    ({"plan_id": "maxi", "when": "custom_date", "date": "2026-02-30"}, 422),  # no such day
    ({"plan_id": "maxi", "when": "custom_date", "date": "10/02/2026"}, 422),  # not YYYY-MM-DD
    ({"plan_id": "maxi", "when": "end_of_period", "date": "2026-02-10"}, 422),  # a date only with custom_date
    # R8a: a plan in another currency is refused whenever it would apply (credit stays in its currency)
    ({"plan_id": "euro", "when": "immediately"}, 409),
    ({"plan_id": "euro", "when": "end_of_period"}, 409),
    ({"plan_id": "euro", "when": "custom_date", "date": "2026-02-10"}, 409),
    ({"when": "immediately"}, 422),
])
def test_a_bad_plan_change_is_a_clear_problem_and_changes_nothing(client, acme, body, status):
    subscribe(client, acme, "mini")
    before = view(client, acme)
    before_invoices = invoices(client, acme)
    assert_problem(client.post("/v1/billing/plan-change", json=body, headers=acme.owner_headers), status)
    assert view(client, acme) == before
    assert invoices(client, acme) == before_invoices


def test_a_plan_change_needs_a_paid_subscription(client, acme):
    body = assert_problem(change_plan(client, acme, "maxi", "immediately"), 409)
    assert "subscribe" in body["detail"]
    client.put("/v1/tenants/acme/subscription", json={"plan_id": "mini"}, headers=operator_headers())
    assert_problem(change_plan(client, acme, "maxi", "immediately"), 409)  # an offline deal is changed by us


@pytest.mark.parametrize("plan_id", ["enterprise", "nope", "", "vip"])
def test_bad_checkouts_are_clear_problems(client, acme, plan_id):
    r = checkout(client, acme, plan_id)
    assert_problem(r, 422 if plan_id in ("enterprise", "") else 404)
    assert card(client, acme)["badge"] == "Trial subscription"


def test_checkout_while_subscribed_is_a_conflict(client, acme):
    subscribe(client, acme, "mini")
    assert_problem(checkout(client, acme, "maxi"), 409)


# -- renewal and failed payments (R10) ---------------------------------------------------------


def test_renewal_invoices_the_price_and_the_sessions_beyond_the_included(client, acme):
    subscribe(client, acme, "mini")
    fill(client, acme, "s", 3)  # 1 beyond the 2 included
    advance(client, to=FEB_28)
    renewal = invoices(client, acme)[0]
    assert renewal["kind"] == "renewal" and renewal["status"] == "paid"
    assert [(x["description"], x["amount"]["amount"]) for x in renewal["lines"]] == [
        ("Mini plan, 2026-02-28 to 2026-03-31", 1000), ("1 sessions beyond the 2 included", 100)]
    assert card(client, acme)["sessions_count"] == 0  # the counter restarts
    assert card(client, acme)["next_billing_date"] == "2026-03-31"


def test_a_failed_renewal_gives_grace_then_overdue_then_a_new_card_makes_it_active_and_admitted(client, acme):
    subscribe(client, acme, "mini")
    assert add_card(client, "acme", CARD_CHARGES_FAIL).status_code == 200
    advance(client, to=FEB_28)

    v = view(client, acme)
    assert [c["badge"] for c in v["cards"]] == ["Payment issue"]
    (banner,) = v["banners"]
    assert banner["title"] == "Payment pending" and "March 7, 2026" in banner["text"]
    admitted(client, acme, "in-grace")  # the gate stays open during grace
    renewal = invoices(client, acme)[0]
    assert renewal["status"] == "open" and renewal["attempts"] == 1

    advance(client, to="2026-03-07T08:59:59Z")  # retried on days 2, 4 and 6 of grace, still failing
    assert invoices(client, acme)[0]["attempts"] == 4
    admitted(client, acme, "last-grace-moment")
    advance(client, to="2026-03-07T09:00:00Z")  # grace (7 days) is over
    refused(client, acme, "overdue", "payment-overdue", PAYMENT_OVERDUE)
    v = view(client, acme)
    assert [c["badge"] for c in v["cards"]] == ["Payment issue"]
    assert v["banners"] == [{"title": PAYMENT_OVERDUE, "text": PAYMENT_OVERDUE_HELP}]
    r = client.get("/v1/admission", headers=acme.key_headers).json()
    assert r == {"accepting": False, "reason": "payment-overdue", "message": PAYMENT_OVERDUE}

    assert add_card(client, "acme", CARD_OK).status_code == 200  # retries the open invoice at once
    assert badges(client, acme) == ["Active subscription"]
    assert view(client, acme)["banners"] == []
    assert invoices(client, acme)[0]["status"] == "paid"
    admitted(client, acme, "overdue")


def test_a_plan_still_unpaid_when_its_period_ends_expires_and_what_it_owes_stays_owed(client, acme):
    subscribe(client, acme, "mini")
    add_card(client, "acme", CARD_CHARGES_FAIL)
    advance(client, to=MAR_31)
    assert badges(client, acme) == ["Expired subscription"]
    refused(client, acme, "after", "subscription-ended", SUBSCRIPTION_ENDED)
    assert invoices(client, acme)[0]["status"] == "open"  # past due: the lapse forgives nothing (R10)
    assert view(client, acme)["balance_due"] == {"amount": 1000, "currency": "USD", "display": "$10.00"}
    advance(client, to=APR_30)
    assert [i["kind"] for i in invoices(client, acme)] == ["renewal", "first"]  # and it does not renew
    assert_problem(checkout(client, acme, "mini"), 409, "balance-due")
    assert add_card(client, "acme", CARD_OK).status_code == 200  # the late payment is applied
    assert invoices(client, acme)[0]["status"] == "paid" and view(client, acme)["balance_due"] is None
    subscribe(client, acme, "mini", CARD_OK)  # only a new subscription, never a trial
    assert badges(client, acme) == ["Active subscription"]


def test_a_declined_card_in_the_portal_is_refused_and_changes_nothing(client, acme):
    subscribe(client, acme, "mini")
    assert_problem(add_card(client, "acme", CARD_DECLINED), 402, "card-declined")
    advance(client, to=FEB_28)
    assert invoices(client, acme)[0]["status"] == "paid"  # still charged on the card it had


# -- cancel (R11) -------------------------------------------------------------------------------


def test_cancel_runs_to_the_period_end_then_closes_the_gate_and_only_a_new_subscription_opens_it(client, acme):
    subscribe(client, acme, "mini")
    change_plan(client, acme, "maxi", "end_of_period")
    assert portal_action(client, "acme", "cancel").status_code == 200
    v = view(client, acme)
    assert [c["badge"] for c in v["cards"]] == ["Canceled subscription"]  # the pending change is dropped
    assert v["cards"][0]["expires_on"] == FEB_28
    assert v["session_limit"]["limit"] == 3  # limits stay until the end
    admitted(client, acme, "before-end")
    assert_problem(change_plan(client, acme, "maxi", "immediately"), 409)

    advance(client, to=FEB_28)
    refused(client, acme, "after-end", "subscription-ended", SUBSCRIPTION_ENDED)
    c = card(client, acme)
    assert c["badge"] == "Canceled subscription" and c["expires_on"] == FEB_28
    assert view(client, acme)["session_limit"] is None
    assert [i["kind"] for i in invoices(client, acme)] == ["first"]  # a cancelled plan does not renew

    subscribe(client, acme, "maxi")
    assert badges(client, acme) == ["Active subscription"]
    assert card(client, acme)["trial_days_left"] is None
    admitted(client, acme, "after-end")


def test_resume_before_the_end_keeps_the_plan_running(client, acme):
    subscribe(client, acme, "mini")
    portal_action(client, "acme", "cancel")
    advance(client, to="2026-02-20T00:00:00Z")
    assert portal_action(client, "acme", "resume").status_code == 200
    assert badges(client, acme) == ["Active subscription"]
    advance(client, to=FEB_28)
    assert badges(client, acme) == ["Active subscription"]
    assert invoices(client, acme)[0]["kind"] == "renewal"
    admitted(client, acme, "still-running")


def test_payment_issue_wins_over_canceled(client, acme):
    subscribe(client, acme, "mini")
    add_card(client, "acme", CARD_CHARGES_FAIL)
    advance(client, to=FEB_28)
    portal_action(client, "acme", "cancel")
    c = card(client, acme)
    assert c["badge"] == "Payment issue" and c["expires_on"] == MAR_31


def test_the_portal_needs_a_subscription_to_cancel(client, acme):
    assert_problem(portal_action(client, "acme", "cancel"), 409)
    assert_problem(portal_action(client, "nobody", "cancel"), 404)


def test_manage_returns_the_portal(client, acme):
    r = client.post("/v1/billing/portal", headers=acme.owner_headers)
    assert r.status_code == 200, r.text
    assert "/sandbox/portal/" in r.json()["url"]


# -- Book a demo ---------------------------------------------------------------------------------


def test_book_a_demo_answers_request_received_and_the_operator_sees_it(client, acme):
    r = client.post("/v1/billing/demo-requests", json={"plan_id": "enterprise", "message": "Call us"},
                    headers=acme.owner_headers)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "Request received"
    listed = client.get("/v1/demo-requests", headers=operator_headers()).json()["data"]
    assert [(d["tenant_id"], d["plan_id"], d["message"], d["user_id"]) for d in listed] == [
        ("acme", "enterprise", "Call us", "u-owner")]
    assert card(client, acme)["badge"] == "Trial subscription"  # nothing else changes


@pytest.mark.parametrize(("body", "status"), [({"plan_id": "mini"}, 422), ({"plan_id": "nope"}, 404),
                                              ({"plan_id": "enterprise", "message": "x" * 2001}, 422), ({}, 422)])
def test_a_bad_demo_request_is_a_clear_problem_and_stores_nothing(client, acme, body, status):
    assert_problem(client.post("/v1/billing/demo-requests", json=body, headers=acme.owner_headers), status)
    assert client.get("/v1/demo-requests", headers=operator_headers()).json()["data"] == []


def test_demo_requests_are_for_the_operator_only(client, acme):
    assert_problem(client.get("/v1/demo-requests", headers=acme.owner_headers), 401)


def test_the_sandbox_automation_is_for_the_operator_only(client, acme):
    co = checkout(client, acme, "mini").json()
    r = client.post(f"/v1/sandbox/checkouts/{co['id']}/complete", json={"card": CARD_OK}, headers=acme.owner_headers)
    assert_problem(r, 401)
    assert card(client, acme)["badge"] == "Trial subscription"


def test_a_non_test_card_is_refused_by_the_sandbox(client, acme):
    co = checkout(client, acme, "mini").json()
    assert_problem(complete(client, co["id"], "4111111111111111"), 422)


def test_invoices_are_for_owners_only(client, acme):
    from tests.support.http import add_user

    member = add_user(client, "acme", "m", "member")
    assert_problem(client.get("/v1/billing/invoices", headers=member), 404)
    assert_problem(client.post("/v1/billing/checkout", json={"plan_id": "mini"}, headers=member), 404)


def test_another_tenants_key_never_sees_these_invoices(client, acme):
    other = setup_tenant(client, "other")
    subscribe(client, acme, "mini")
    assert invoices(client, other) == []
    inv = invoices(client, acme)[0]["id"]
    assert_problem(client.get(f"/v1/billing/invoices/{inv}", headers=other.owner_headers), 404)
    assert open_session(client, other, "x").status_code == 201


def test_a_checkout_posted_again_with_its_idempotency_key_is_the_same_checkout(client, acme):
    headers = {**acme.owner_headers, "Idempotency-Key": "subscribe-1"}
    first = client.post("/v1/billing/checkout", json={"plan_id": "mini"}, headers=headers)
    again = client.post("/v1/billing/checkout", json={"plan_id": "mini"}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers.get("Idempotent-Replayed") == "true"
    assert_problem(client.post("/v1/billing/checkout", json={"plan_id": "maxi"}, headers=headers), 422)
