"""Edges of the subscription lifecycle found in review, each replayed through the sandbox: a second
checkout, a card added after the plan ended, an offline deal over a failing plan, a change on a
custom date mid-period, two deliveries about one subscription at once, and a worker pass with
nothing to do."""

from __future__ import annotations

import threading

from sqlalchemy import select

from agentbilling.storage.tables import sandbox_charges, subscriptions
from tests.support.http import assert_problem, card, view
from tests.support.service import operator_headers
from tests.support.subscribing import (  # noqa: F401 (settings and acme are fixtures)
    CARD_CHARGES_FAIL,
    CARD_OK,
    acme,
    add_card,
    badges,
    change_plan,
    checkout,
    complete,
    invoices,
    portal_action,
    settings,
    subscribe,
    undelivered,
)
from tests.support.tenants import advance

FEB_28 = "2026-02-28T09:00:00Z"
MAR_31 = "2026-03-31T09:00:00Z"


def charges(billing) -> list[tuple[str, int, bool]]:
    with billing.db.read() as conn:
        return [tuple(r) for r in conn.execute(select(sandbox_charges.c.invoice_id, sandbox_charges.c.amount,
                                                      sandbox_charges.c.succeeded))]


def revision(billing, tenant_id: str) -> int:
    with billing.db.read() as conn:
        return conn.execute(select(subscriptions.c.revision).where(subscriptions.c.tenant_id == tenant_id)).scalar()


def test_a_second_checkout_opened_during_the_trial_cannot_be_paid_once_a_plan_runs(client, billing, acme):
    first = checkout(client, acme, "mini").json()
    second = checkout(client, acme, "maxi").json()
    assert complete(client, first["id"]).status_code == 200
    assert_problem(complete(client, second["id"]), 409)
    assert [c[1] for c in charges(billing)] == [1000]  # charged once
    portal_action(client, "acme", "cancel")
    assert badges(client, acme) == ["Canceled subscription"]  # the cancellation is about the plan that runs


def test_a_card_added_after_the_plan_ended_unpaid_pays_what_it_owed_and_nothing_more(client, billing, acme):
    subscribe(client, acme, "mini")
    add_card(client, "acme", CARD_CHARGES_FAIL)
    advance(client, to=MAR_31)
    assert badges(client, acme) == ["Expired subscription"]
    paid_before = [c for c in charges(billing) if c[2]]
    assert add_card(client, "acme", CARD_OK).status_code == 200
    paid = [c for c in charges(billing) if c[2]]
    assert paid == paid_before + [("rn_" + paid[-1][0][3:], 1000, True)]  # the renewal, once
    assert invoices(client, acme)[0]["status"] == "paid"
    assert badges(client, acme) == ["Expired subscription"]  # a late payment settles; it restarts nothing


def test_an_offline_deal_over_a_failing_plan_stops_its_retries(client, billing, acme):
    subscribe(client, acme, "mini")
    add_card(client, "acme", CARD_CHARGES_FAIL)
    advance(client, to=FEB_28)
    assert badges(client, acme) == ["Payment issue"]
    r = client.put("/v1/tenants/acme/subscription", json={"plan_id": "maxi"}, headers=operator_headers())
    assert r.status_code == 200, r.text
    tried = len(charges(billing))
    advance(client, to="2026-03-06T00:00:00Z")
    assert len(charges(billing)) == tried
    assert badges(client, acme) == ["Active subscription"]
    renewal = next(i for i in invoices(client, acme) if i["kind"] == "renewal")
    assert renewal["status"] == "open"  # still owed (R10), no longer retried by itself
    assert view(client, acme)["balance_due"]["amount"] == renewal["total"]["amount"]


def test_a_change_on_a_custom_date_mid_period_is_prorated_from_that_day(client, billing, acme):
    subscribe(client, acme, "mini")
    assert change_plan(client, acme, "maxi", "custom_date", "2026-02-14").status_code == 200
    advance(client, to="2026-02-14T00:00:00Z")
    assert card(client, acme)["plan"]["id"] == "maxi"
    proration = invoices(client, acme)[0]
    assert (proration["kind"], proration["status"]) == ("proration", "paid")
    # ($30 - $10) for Feb 14 00:00 .. Feb 28 09:00 of the 28-day period Jan 31 09:00 .. Feb 28 09:00
    assert proration["total"]["amount"] == round(2000 * (14 * 24 + 9) / (28 * 24))
    advance(client, to="2026-02-20T00:00:00Z")
    assert len([i for i in invoices(client, acme) if i["kind"] == "proration"]) == 1  # once


def test_a_downgrade_on_a_custom_date_leaves_a_credit_for_the_renewal(client, billing, acme):
    subscribe(client, acme, "maxi")
    assert change_plan(client, acme, "mini", "custom_date", "2026-02-21").status_code == 200
    advance(client, to=FEB_28)
    renewal = invoices(client, acme)[0]
    credit = round(2000 * (7 * 24 + 9) / (28 * 24))  # ($30 - $10) for Feb 21 00:00 .. Feb 28 09:00
    assert renewal["kind"] == "renewal" and renewal["total"]["amount"] == 1000 - credit
    assert renewal["lines"][-1]["description"] == "Credit from an earlier plan change"


def test_two_deliveries_about_one_subscription_at_once_end_in_the_providers_latest_state(client, billing, acme):
    """The first delivery reads the subscription (cancel asked) and stalls; the tenant resumes and
    the second delivery is applied; then the first goes on. It reads again under the row lock."""
    subscribe(client, acme, "mini")
    sandbox, lifecycle = billing.sandbox, billing.lifecycle
    deliver, sandbox.deliver = sandbox.deliver, None
    portal_action(client, "acme", "cancel")
    (first,) = undelivered(billing)
    real = sandbox.subscription
    stalled, go = threading.Event(), threading.Event()

    def slow(subscription_id):
        found = real(subscription_id)
        if not stalled.is_set():
            stalled.set()
            go.wait(10)
        return found

    sandbox.subscription = slow
    try:
        thread = threading.Thread(target=lambda: lifecycle.receive(first.body.encode(),
                                                                   sandbox.sign(first.id, first.body), billing.now))
        thread.start()
        assert stalled.wait(10)
        portal_action(client, "acme", "resume")
        (second,) = [e for e in undelivered(billing) if e.id != first.id]
        assert lifecycle.receive(second.body.encode(), sandbox.sign(second.id, second.body), billing.now) == "applied"
        go.set()
        thread.join(30)
    finally:
        sandbox.subscription, sandbox.deliver = real, deliver
    assert sandbox.customer("acme")["cancel_requested_at"] is None
    assert badges(client, acme) == ["Active subscription"]


def test_a_worker_pass_with_nothing_to_do_writes_nothing(client, billing, acme):
    """A tenant in grace is looked at every pass; unchanged, its row (and so the gate's kept
    standing, checked against its revision) is left alone."""
    subscribe(client, acme, "mini")
    add_card(client, "acme", CARD_CHARGES_FAIL)
    advance(client, to=FEB_28)
    assert badges(client, acme) == ["Payment issue"]
    before = revision(billing, "acme")
    for _ in range(3):
        billing.run_due()
    assert revision(billing, "acme") == before


def test_a_checkout_left_open_before_an_offline_deal_cannot_be_paid(client, billing, acme):
    co = checkout(client, acme, "mini").json()
    r = client.put("/v1/tenants/acme/subscription", json={"plan_id": "enterprise"}, headers=operator_headers())
    assert r.status_code == 200, r.text
    assert_problem(complete(client, co["id"]), 409)
    assert charges(billing) == []
    assert card(client, acme)["plan"]["id"] == "enterprise"


def test_an_immediate_change_right_after_a_scheduled_one_came_due_prorates_both(client, billing, acme):
    """The custom-date upgrade came due five seconds ago and nothing has written it yet; the
    tenant switches back at once: the upgrade is invoiced from its moment and the switch back
    credits the same span, less five seconds."""
    from datetime import UTC, datetime

    subscribe(client, acme, "mini")
    assert change_plan(client, acme, "maxi", "custom_date", "2026-02-14").status_code == 200
    billing.test_clock.set(datetime(2026, 2, 14, 0, 0, 5, tzinfo=UTC))  # no advance: nothing has run
    assert change_plan(client, acme, "mini", "immediately").status_code == 200
    up, back = sorted((i["total"]["amount"] for i in invoices(client, acme) if i["kind"] == "proration"),
                      reverse=True)
    assert up == round(2000 * (14 * 24 + 9) / (28 * 24))  # charged
    assert -1 <= up + back <= 0  # the credit note of the switch back
    from agentbilling.storage.tables import credit_balances

    with billing.db.read() as conn:
        row = conn.execute(select(subscriptions.c.plan_id, subscriptions.c.previous_plan_id)).one()
        credit = conn.execute(select(credit_balances.c.currency, credit_balances.c.amount)).all()
    assert row.plan_id == "mini" and row.previous_plan_id == "maxi"
    assert credit == [("USD", -back)]


def test_a_scheduled_change_that_came_due_in_a_plan_that_then_lapsed_is_billed_once_and_stays_owed(
        client, billing, acme):
    from datetime import UTC, datetime

    subscribe(client, acme, "mini")
    add_card(client, "acme", CARD_CHARGES_FAIL)
    advance(client, to=FEB_28)
    assert change_plan(client, acme, "maxi", "custom_date", "2026-03-20").status_code == 200
    billing.lifecycle.run_due(datetime(2026, 3, 31, 9, 0, 5, tzinfo=UTC))  # one pass after both came due
    billing.lifecycle.run_due(datetime(2026, 3, 31, 9, 0, 6, tzinfo=UTC))
    assert badges(client, acme) == ["Expired subscription"]
    owed = sorted((i["kind"], i["status"]) for i in invoices(client, acme) if i["status"] == "open")
    assert owed == [("proration", "open"), ("renewal", "open")]  # each once, neither forgiven


def test_two_checkouts_of_a_tenant_completed_at_once_start_one_plan(client, billing, acme):
    first, second = (checkout(client, acme, plan).json()["id"] for plan in ("mini", "maxi"))
    outcomes: dict[str, str] = {}

    def pay(checkout_id: str) -> None:
        try:
            billing.sandbox_complete_checkout(checkout_id, CARD_OK)
            outcomes[checkout_id] = "paid"
        except Exception as exc:  # the one that lost: a clear conflict, not a deadlock
            outcomes[checkout_id] = type(exc).__name__

    threads = [threading.Thread(target=pay, args=(c,)) for c in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes.values()) == ["Conflict", "paid"]
    assert len([c for c in charges(billing) if c[2]]) == 1
    assert badges(client, acme) == ["Active subscription"]


def test_a_webhook_waiting_on_its_provider_holds_up_no_other_tenants_admission(client, billing, acme):
    """On SQLite the database has one writer; a delivery reads its provider before it writes, so
    a slow provider holds up only that tenant's deliveries, never another tenant's admissions."""
    subscribe(client, acme, "mini")
    billing.create_tenant("other", "Other", "billing@other.test")
    sandbox, lifecycle = billing.sandbox, billing.lifecycle
    deliver, sandbox.deliver = sandbox.deliver, None
    portal_action(client, "acme", "cancel")
    (event,) = undelivered(billing)
    real, reads = sandbox.subscription, []
    reading, admitted = threading.Event(), threading.Event()

    def slow(subscription_id):
        reads.append(subscription_id)
        if len(reads) == 2:  # the read made once the delivery holds the tenant
            reading.set()
            admitted.wait(20)  # a slow provider, until the other tenant's admission is through
        return real(subscription_id)

    sandbox.subscription = slow
    try:
        thread = threading.Thread(target=lambda: lifecycle.receive(event.body.encode(),
                                                                   sandbox.sign(event.id, event.body), billing.now))
        thread.start()
        assert reading.wait(10)
        done: list[object] = []
        other = threading.Thread(target=lambda: done.append(
            billing.open_session("other", "s1", agent_id="a", direction="inbound")))
        other.start()
        other.join(10)  # blocked behind the delivery, it would not finish before the provider answered
        assert done and done[0].session is not None
        admitted.set()
        thread.join(30)
    finally:
        sandbox.subscription, sandbox.deliver = real, deliver
    assert badges(client, acme) == ["Canceled subscription"]


def test_what_the_provider_must_still_be_told_is_told_again_until_it_goes_through(client, billing, acme,
                                                                                  monkeypatch):
    """An offline deal closes the tenant's open checkouts at the provider, which is down when told.
    The command is kept and the next worker pass tells it again."""
    from agentbilling.storage.tables import provider_commands

    subscribe(client, acme, "mini")
    add_card(client, "acme", CARD_CHARGES_FAIL)
    advance(client, to=FEB_28)
    real_expire, calls = billing.sandbox.expire_checkouts, []

    def down_once(tenant_id, customer):
        calls.append(tenant_id)
        if len(calls) == 1:
            raise ConnectionError("the provider is down")
        real_expire(tenant_id, customer)

    monkeypatch.setattr(billing.sandbox, "expire_checkouts", down_once)
    r = client.put("/v1/tenants/acme/subscription", json={"plan_id": "maxi"}, headers=operator_headers())
    assert r.status_code == 200, r.text  # the deal is made whatever the provider said

    def pending():
        with billing.db.read() as conn:
            return conn.execute(select(provider_commands.c.kind, provider_commands.c.attempts)
                                .where(provider_commands.c.done_at.is_(None))).all()

    assert pending() == [("expire_checkouts", 1)]
    billing.run_due()
    assert pending() == [] and len(calls) == 2
