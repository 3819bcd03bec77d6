"""The Stripe stand-in driven through the official stripe SDK, with a local receiver verifying webhooks."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import stripe

from tests.support.standin import SECRET, START

from . import StripeStandin
from .forms import parse_form
from .periods import add_months
from .receiver import WebhookReceiver

T0 = int(START.timestamp())
DAY = 86400
FEB28 = add_months(T0, 1)  # Jan 31 09:00 + 1 month, clamped
MAR31 = add_months(T0, 2)


def post(url: str, **data: Any) -> httpx.Response:
    return httpx.post(url, data=data, timeout=30)


def advance(sdk: stripe.StripeClient, clock_id: str, to: int) -> None:
    """As a provider would: ask to advance, then poll until the clock is ready."""
    clock = sdk.v1.test_helpers.test_clocks.advance(clock_id, params={"frozen_time": to})
    assert clock.status == "advancing"
    deadline = time.monotonic() + 60
    while sdk.v1.test_helpers.test_clocks.retrieve(clock_id).status != "ready":
        assert time.monotonic() < deadline, "clock never became ready"
        time.sleep(0.02)


def subscribe(sdk: stripe.StripeClient, standin: StripeStandin, card: str = "4242424242424242",
              price: str = "price_starter") -> tuple[Any, Any, httpx.Response]:
    """A customer on a fresh test clock, a Checkout Session, and the person paying it with `card`."""
    clock = sdk.v1.test_helpers.test_clocks.create(params={"frozen_time": T0, "name": "story"})
    cus = sdk.v1.customers.create(params={"email": "owner@acme.test", "test_clock": clock.id,
                                          "metadata": {"tenant_id": "acme"}})
    sess = sdk.v1.checkout.sessions.create(params={
        "mode": "subscription", "customer": cus.id, "line_items": [{"price": price, "quantity": 1}],
        "success_url": "https://app.test/ok?cs={CHECKOUT_SESSION_ID}", "cancel_url": "https://app.test/no",
        "client_reference_id": "acme", "metadata": {"tenant_id": "acme"},
        "subscription_data": {"metadata": {"tenant_id": "acme"}}})
    assert sess.url == f"{standin.url}/checkout/{sess.id}"
    return cus, sess, post(f"{standin.url}/_standin/checkout/{sess.id}/complete", card=card)


def subscription_of(sdk: stripe.StripeClient, customer_id: str) -> Any:
    return sdk.v1.subscriptions.list(params={"customer": customer_id, "status": "all"}).data[0]


# parsing, auth, errors

def test_form_bodies_nest_by_brackets() -> None:
    parsed = parse_form("line_items[0][price]=p1&line_items[0][quantity]=2&metadata[tenant_id]=t"
                        "&expand[]=a&expand[]=b&subscription_data[metadata][k]=v&phases[1][items][0][price]=p2"
                        "&phases[0][items][0][price]=p3&expand2[0]=x")
    assert parsed == {
        "line_items": [{"price": "p1", "quantity": "2"}], "metadata": {"tenant_id": "t"}, "expand": ["a", "b"],
        "subscription_data": {"metadata": {"k": "v"}}, "expand2": ["x"],
        "phases": [{"items": [{"price": "p3"}]}, {"items": [{"price": "p2"}]}],
    }


def test_auth_and_missing_objects_use_stripes_error_shape(standin: StripeStandin, sdk: stripe.StripeClient) -> None:
    raw = httpx.get(f"{standin.url}/v1/customers/cus_nope")
    assert raw.status_code == 401
    assert raw.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(stripe.AuthenticationError):
        stripe.StripeClient("sk_live_nope", base_addresses={"api": standin.url}).v1.customers.retrieve("cus_x")
    with pytest.raises(stripe.InvalidRequestError) as missing:
        sdk.v1.customers.retrieve("cus_nope")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    body = httpx.get(f"{standin.url}/v1/prices/price_nope", headers={"Authorization": "Bearer sk_test_1"}).json()
    assert body["error"] | {} == body["error"] and body["error"]["code"] == "resource_missing"


def test_prices_customers_and_payment_methods(sdk: stripe.StripeClient) -> None:
    price = sdk.v1.prices.create(params={"unit_amount": 2900, "currency": "usd", "recurring": {"interval": "month"},
                                         "product_data": {"name": "Team"}})
    assert price.id.startswith("price_") and price.object == "price" and price.livemode is False
    assert sdk.v1.prices.retrieve(price.id).unit_amount == 2900
    assert sdk.v1.prices.retrieve("price_starter").recurring.interval == "month"
    cus = sdk.v1.customers.create(params={"email": "a@b.test", "name": "A", "metadata": {"tenant_id": "t1"}})
    assert cus.id.startswith("cus_") and cus.metadata["tenant_id"] == "t1" and cus.test_clock is None
    pm = sdk.v1.payment_methods.create(params={"type": "card", "card": {"number": "4242424242424242",
                                                                         "exp_month": 12, "exp_year": 2030}})
    sdk.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
    updated = sdk.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id},
                                                      "metadata": {"plan": "team"}})
    assert updated.invoice_settings.default_payment_method == pm.id
    assert updated.metadata.to_dict() == {"tenant_id": "t1", "plan": "team"}
    visa = sdk.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
    assert visa.id.startswith("pm_") and visa.card.last4 == "4242" and visa.customer == cus.id
    with pytest.raises(stripe.CardError) as declined:
        sdk.v1.payment_methods.attach("pm_card_chargeDeclined", params={"customer": cus.id})
    assert declined.value.code == "card_declined"
    portal = sdk.v1.billing_portal.sessions.create(params={"customer": cus.id, "return_url": "https://app.test"})
    assert portal.url.endswith(f"/portal/{portal.id}")


def test_module_level_api_base_works_too(standin: StripeStandin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stripe, "api_key", "sk_test_global")
    monkeypatch.setattr(stripe, "api_base", standin.url)
    assert stripe.Price.retrieve("price_pro").unit_amount == 19900


# checkout

def test_checkout_with_a_good_card_starts_a_paid_subscription(
        standin: StripeStandin, sdk: stripe.StripeClient, receiver: WebhookReceiver) -> None:
    cus, sess, done = subscribe(sdk, standin)
    assert done.status_code == 200, done.text
    assert done.json()["redirect_url"] == f"https://app.test/ok?cs={sess.id}"
    sess = sdk.v1.checkout.sessions.retrieve(sess.id, params={"expand": ["line_items"]})
    assert (sess.status, sess.payment_status, sess.customer) == ("complete", "paid", cus.id)
    assert sess.line_items.data[0].price.id == "price_starter"
    sub = sdk.v1.subscriptions.retrieve(sess.subscription, params={"expand": ["latest_invoice"]})
    assert sub.status == "active" and sub.metadata["tenant_id"] == "acme"
    assert (sub.current_period_start, sub.current_period_end) == (T0, FEB28)
    item = sub["items"].data[0]
    assert item.price.id == "price_starter" and (item.current_period_start, item.current_period_end) == (T0, FEB28)
    assert sub.latest_invoice.status == "paid" and sub.latest_invoice.billing_reason == "subscription_create"
    assert sub.latest_invoice.amount_paid == 4900 and sub.test_clock is not None
    # the webhooks arrived (signed, verified by the receiver) before the person's request returned
    types = receiver.types()
    assert types.index("checkout.session.completed") < types.index("customer.subscription.created")
    assert {"customer.subscription.created", "invoice.paid", "invoice.payment_succeeded"} <= set(types)
    completed = receiver.of_type("checkout.session.completed")[0]["data"]["object"]
    assert completed["subscription"] == sub.id and completed["customer"] == cus.id
    assert completed["client_reference_id"] == "acme"
    assert not receiver.rejected


@pytest.mark.parametrize("card", ["4000000000000002", "4000000000000341"])
def test_checkout_with_a_refused_card_creates_nothing(
        standin: StripeStandin, sdk: stripe.StripeClient, receiver: WebhookReceiver, card: str) -> None:
    cus, sess, done = subscribe(sdk, standin, card=card)
    assert done.status_code == 402
    assert done.json()["error"]["type"] == "card_error" and done.json()["error"]["code"] == "card_declined"
    assert sdk.v1.checkout.sessions.retrieve(sess.id).status == "open"
    assert sdk.v1.subscriptions.list(params={"customer": cus.id, "status": "all"}).data == []
    assert "checkout.session.completed" not in receiver.types()


# the clock: renewals, failed payments, plan changes, cancellation

def test_a_month_later_the_renewal_invoice_takes_overage_then_is_paid(
        standin: StripeStandin, sdk: stripe.StripeClient, receiver: WebhookReceiver) -> None:
    cus, _, _ = subscribe(sdk, standin)
    sub = subscription_of(sdk, cus.id)

    def add_overage(event: dict[str, Any]) -> None:
        inv = event["data"]["object"]
        if event["type"] == "invoice.created" and inv["billing_reason"] == "subscription_cycle":
            assert inv["status"] == "draft"
            sdk.v1.invoice_items.create(params={"customer": inv["customer"], "invoice": inv["id"], "amount": 1234,
                                                "currency": "usd", "description": "120 extra sessions"})

    receiver.on_event = add_overage
    receiver.clear()
    advance(sdk, sub.test_clock, FEB28)
    assert receiver.types() == ["customer.subscription.updated", "invoice.created", "invoiceitem.created",
                                "invoice.finalized", "invoice.paid", "invoice.payment_succeeded"]
    renewal = sdk.v1.invoices.list(params={"subscription": sub.id}).data[0]
    assert renewal.billing_reason == "subscription_cycle" and renewal.status == "paid"
    assert renewal.amount_paid == 4900 + 1234 and (renewal.period_start, renewal.period_end) == (T0, FEB28)
    assert renewal.lines.data[0].period.start == FEB28 and renewal.lines.data[0].period.end == MAR31
    assert renewal.hosted_invoice_url.startswith(standin.url)
    sub = sdk.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.current_period_start, sub.current_period_end) == ("active", FEB28, MAR31)


def test_a_failing_card_makes_it_past_due_with_retries_until_a_new_card_pays(
        standin: StripeStandin, sdk: stripe.StripeClient, receiver: WebhookReceiver) -> None:
    cus, _, _ = subscribe(sdk, standin)
    sub = subscription_of(sdk, cus.id)
    swapped = post(f"{standin.url}/_standin/customers/{cus.id}/payment_methods", card="4000000000000341")
    assert swapped.status_code == 200, swapped.text
    receiver.clear()
    advance(sdk, sub.test_clock, FEB28 + DAY)
    assert "invoice.payment_failed" in receiver.types()
    assert sdk.v1.subscriptions.retrieve(sub.id).status == "past_due"
    inv = sdk.v1.invoices.list(params={"subscription": sub.id, "status": "open"}).data[0]
    assert (inv.attempt_count, inv.next_payment_attempt) == (1, FEB28 + 3 * DAY)
    advance(sdk, sub.test_clock, FEB28 + 4 * DAY)  # the day-3 retry fails too
    inv = sdk.v1.invoices.retrieve(inv.id)
    assert (inv.attempt_count, inv.next_payment_attempt, inv.status) == (2, FEB28 + 5 * DAY, "open")
    with pytest.raises(stripe.CardError):
        sdk.v1.invoices.pay(inv.id)  # retrying by hand with the same failing card
    receiver.clear()
    paid = post(f"{standin.url}/_standin/customers/{cus.id}/payment_methods", card="4242424242424242")
    assert paid.json()["retried"] == [{"invoice": inv.id, "status": "paid", "decline_code": None}]
    assert sdk.v1.invoices.retrieve(inv.id).status == "paid"
    assert sdk.v1.subscriptions.retrieve(sub.id).status == "active"
    updated = receiver.of_type("customer.subscription.updated")[-1]["data"]
    assert updated["object"]["status"] == "active" and updated["previous_attributes"]["status"] == "past_due"


def test_retries_run_out_after_day_five_and_it_stays_past_due(
        standin: StripeStandin, sdk: stripe.StripeClient) -> None:
    cus, _, _ = subscribe(sdk, standin)
    sub = subscription_of(sdk, cus.id)
    post(f"{standin.url}/_standin/customers/{cus.id}/payment_methods", card="4000000000000341")
    advance(sdk, sub.test_clock, FEB28 + 6 * DAY)
    inv = sdk.v1.invoices.list(params={"subscription": sub.id, "status": "open"}).data[0]
    assert (inv.attempt_count, inv.next_payment_attempt) == (3, None)
    assert sdk.v1.subscriptions.retrieve(sub.id).status == "past_due"
    failures = [e for e in sdk.v1.events.list(params={"type": "invoice.payment_failed"}).data]
    assert len(failures) == 3


def test_an_immediate_upgrade_invoices_the_prorated_difference_at_once(
        standin: StripeStandin, sdk: stripe.StripeClient, receiver: WebhookReceiver) -> None:
    cus, _, _ = subscribe(sdk, standin)
    sub = subscription_of(sdk, cus.id)
    halfway = T0 + (FEB28 - T0) // 2
    advance(sdk, sub.test_clock, halfway)
    receiver.clear()
    sub = sdk.v1.subscriptions.update(sub.id, params={
        "items": [{"id": sub["items"].data[0].id, "price": "price_pro"}], "proration_behavior": "always_invoice"})
    assert sub["items"].data[0].price.id == "price_pro"
    assert (sub.current_period_start, sub.current_period_end) == (T0, FEB28)  # the period does not restart
    inv = sdk.v1.invoices.retrieve(sub.latest_invoice)
    assert inv.billing_reason == "subscription_update" and inv.status == "paid"
    assert inv.amount_paid == (19900 - 4900) // 2 and len(inv.lines.data) == 2
    standin.wait_for_webhooks()  # API calls answer at once; their webhooks follow, in order
    assert receiver.types() == ["customer.subscription.updated", "invoice.created", "invoice.finalized",
                                "invoice.paid", "invoice.payment_succeeded"]
    advance(sdk, sub.test_clock, FEB28)
    renewal = sdk.v1.invoices.list(params={"subscription": sub.id}).data[0]
    assert (renewal.billing_reason, renewal.amount_paid) == ("subscription_cycle", 19900)


def test_a_scheduled_change_switches_the_price_at_the_boundary(
        standin: StripeStandin, sdk: stripe.StripeClient, receiver: WebhookReceiver) -> None:
    cus, _, _ = subscribe(sdk, standin)
    sub = subscription_of(sdk, cus.id)
    sched = sdk.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    assert sdk.v1.subscriptions.retrieve(sub.id).schedule == sched.id
    custom = T0 + 10 * DAY
    sched = sdk.v1.subscription_schedules.update(sched.id, params={"end_behavior": "release", "phases": [
        {"items": [{"price": "price_starter"}], "start_date": sched.phases[0].start_date, "end_date": custom},
        {"items": [{"price": "price_pro"}], "end_date": FEB28}]})
    assert [p.end_date for p in sched.phases] == [custom, FEB28]
    advance(sdk, sub.test_clock, custom + DAY)
    sub = sdk.v1.subscriptions.retrieve(sub.id)
    assert sub["items"].data[0].price.id == "price_pro"
    assert (sub.current_period_start, sub.current_period_end) == (T0, FEB28)
    assert [i.billing_reason for i in sdk.v1.invoices.list(params={"subscription": sub.id}).data] == [
        "subscription_create"]  # no proration at the boundary
    receiver.clear()
    advance(sdk, sub.test_clock, FEB28)
    assert sdk.v1.subscription_schedules.retrieve(sched.id).status == "released"
    assert sdk.v1.subscriptions.retrieve(sub.id).schedule is None
    assert "subscription_schedule.released" in receiver.types()
    renewal = sdk.v1.invoices.list(params={"subscription": sub.id}).data[0]
    assert (renewal.billing_reason, renewal.amount_paid) == ("subscription_cycle", 19900)


def test_cancel_at_period_end_ends_it_at_the_period_end(
        standin: StripeStandin, sdk: stripe.StripeClient, receiver: WebhookReceiver) -> None:
    cus, _, _ = subscribe(sdk, standin)
    sub = subscription_of(sdk, cus.id)
    receiver.clear()
    assert post(f"{standin.url}/_standin/portal/{cus.id}/cancel").status_code == 200
    assert post(f"{standin.url}/_standin/portal/{cus.id}/resume").status_code == 200
    assert post(f"{standin.url}/_standin/portal/{cus.id}/cancel").status_code == 200
    flags = [(e["data"]["object"]["cancel_at_period_end"], e["data"]["previous_attributes"]["cancel_at_period_end"])
             for e in receiver.of_type("customer.subscription.updated")]
    assert flags == [(True, False), (False, True), (True, False)]
    assert sdk.v1.subscriptions.retrieve(sub.id).cancel_at == FEB28
    advance(sdk, sub.test_clock, FEB28 + DAY)
    sub = sdk.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.ended_at) == ("canceled", FEB28)
    deleted = receiver.of_type("customer.subscription.deleted")
    assert len(deleted) == 1 and deleted[0]["created"] == FEB28
    assert [i.billing_reason for i in sdk.v1.invoices.list(params={"subscription": sub.id}).data] == [
        "subscription_create"]


def test_delete_cancels_now(standin: StripeStandin, sdk: stripe.StripeClient) -> None:
    cus, _, _ = subscribe(sdk, standin)
    sub = sdk.v1.subscriptions.cancel(subscription_of(sdk, cus.id).id)
    assert (sub.status, sub.canceled_at, sub.ended_at) == ("canceled", T0, T0)


def test_the_default_clock_serves_customers_without_a_test_clock(
        standin: StripeStandin, sdk: stripe.StripeClient) -> None:
    cus = sdk.v1.customers.create(params={"email": "solo@acme.test", "payment_method": "pm_card_visa"})
    pm = sdk.v1.payment_methods.list(params={"customer": cus.id, "type": "card"}).data[0]
    sdk.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    sub = sdk.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": "price_starter"}]})
    assert (sub.status, sub.test_clock, sub.current_period_end) == ("active", None, FEB28)
    advance(sdk, standin.default_clock, MAR31)  # two periods: Feb 28 then Mar 31
    invoices = sdk.v1.invoices.list(params={"subscription": sub.id}).data
    assert [(i.billing_reason, i.status) for i in invoices] == [
        ("subscription_cycle", "paid"), ("subscription_cycle", "paid"), ("subscription_create", "paid")]


# webhooks

def test_webhooks_verify_and_can_be_redelivered(standin: StripeStandin, sdk: stripe.StripeClient,
                                               receiver: WebhookReceiver) -> None:
    subscribe(sdk, standin)
    assert receiver.events and not receiver.rejected
    delivery = standin.deliveries[0]
    assert delivery["status"] == "delivered" and delivery["attempts"][0]["status_code"] == 200
    event = sdk.v1.events.retrieve(delivery["event_id"])
    assert event.type == delivery["type"] and event.api_version
    again = standin.redeliver(event.id)
    assert again is not None and again["status"] == "delivered" and again["redelivery"]
    assert sum(e["id"] == event.id for e in receiver.events) == 2
    from .webhooks import sign
    payload = json.dumps({"id": "evt_x", "object": "event", "type": "ping", "data": {"object": {}}})
    assert stripe.Webhook.construct_event(payload, sign(payload, SECRET), SECRET).id == "evt_x"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, sign(payload, "whsec_other"), SECRET)


def test_a_failing_receiver_is_retried_then_recorded_and_the_clock_still_gets_ready(
        receiver: WebhookReceiver) -> None:
    with StripeStandin(receiver.url, SECRET, start_time=START, webhook_retry_delays=(0.01, 0.01),
                       prices=[{"id": "price_starter", "unit_amount": 4900}]) as standin:
        sdk = standin.client()
        cus, _, _ = subscribe(sdk, standin)
        receiver.on_event = lambda e: 500 if e["type"] == "invoice.created" else None
        advance(sdk, subscription_of(sdk, cus.id).test_clock, FEB28)
        failed = [d for d in standin.deliveries if d["status"] == "failed"]
        assert [d["type"] for d in failed] == ["invoice.created"] and len(failed[0]["attempts"]) == 3
        assert sdk.v1.invoices.list(params={"customer": cus.id}).data[0].status == "paid"
        standin.set_webhook(receiver.url, "whsec_wrong")
        standin.redeliver(failed[0]["event_id"])
        assert receiver.rejected
