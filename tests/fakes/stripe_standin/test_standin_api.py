"""Smaller API details of the stand-in: idempotency, incomplete subscriptions, lists, Python helpers, pages."""

from __future__ import annotations

import httpx
import pytest
import stripe

from tests.support.standin import START

from . import StripeStandin
from .receiver import WebhookReceiver

T0 = int(START.timestamp())


def test_a_repeated_idempotency_key_replays_the_first_response(sdk: stripe.StripeClient) -> None:
    first = sdk.v1.customers.create(params={"email": "a@b.test"}, options={"idempotency_key": "k-1"})
    again = sdk.v1.customers.create(params={"email": "a@b.test"}, options={"idempotency_key": "k-1"})
    assert first.id == again.id
    assert len(sdk.v1.customers.list().data) == 1
    with pytest.raises(stripe.IdempotencyError):
        sdk.v1.customers.create(params={"email": "other@b.test"}, options={"idempotency_key": "k-1"})


def test_a_first_payment_that_fails_leaves_it_incomplete_until_it_expires(
        standin: StripeStandin, sdk: stripe.StripeClient) -> None:
    cus = sdk.v1.customers.create(params={"payment_method": "pm_card_chargeCustomerFail"})
    pm = sdk.v1.payment_methods.list(params={"customer": cus.id}).data[0]
    sub = sdk.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": "price_starter"}],
                                              "default_payment_method": pm.id})
    assert sub.status == "incomplete" and sdk.v1.invoices.retrieve(sub.latest_invoice).status == "open"
    with pytest.raises(stripe.CardError):
        sdk.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": "price_starter"}],
                                            "default_payment_method": pm.id,
                                            "payment_behavior": "error_if_incomplete"})
    clock = standin.advance(T0 + 24 * 3600)
    assert clock["status"] == "ready" and clock["frozen_time"] == T0 + 24 * 3600
    assert sdk.v1.subscriptions.retrieve(sub.id).status == "incomplete_expired"
    assert sdk.v1.invoices.retrieve(sub.latest_invoice).status == "void"


def test_paying_an_incomplete_subscriptions_invoice_activates_it(sdk: stripe.StripeClient) -> None:
    cus = sdk.v1.customers.create(params={"email": "a@b.test"})
    sub = sdk.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": "price_pro"}],
                                              "payment_behavior": "default_incomplete"})
    assert sub.status == "incomplete"
    paid = sdk.v1.invoices.pay(sub.latest_invoice, params={"payment_method": "pm_card_visa"})
    assert (paid.status, paid.amount_paid) == ("paid", 19900)
    assert sdk.v1.subscriptions.retrieve(sub.id).status == "active"


def test_python_helpers_drive_the_hosted_pages(standin: StripeStandin, sdk: stripe.StripeClient,
                                               receiver: WebhookReceiver) -> None:
    sess = sdk.v1.checkout.sessions.create(params={
        "mode": "subscription", "customer_email": "new@acme.test", "success_url": "https://app.test/ok",
        "line_items": [{"price": "price_starter", "quantity": 1}]})
    assert httpx.get(sess.url).status_code == 200  # the page a person would see
    done = standin.complete_checkout(sess.id, "4242424242424242")
    customer_id = done["checkout_session"]["customer"]
    assert sdk.v1.customers.retrieve(customer_id).email == "new@acme.test"
    assert standin.portal_cancel(customer_id)["cancel_at_period_end"] is True
    assert standin.portal_resume(customer_id)["cancel_at_period_end"] is False
    with pytest.raises(stripe.InvalidRequestError):  # a malformed boolean is a 400
        sdk.v1.subscriptions.update(done["subscription"]["id"], params={"cancel_at_period_end": "oops"})
    types = [e["type"] for e in standin.events()]
    assert "customer.created" in types and types.count("customer.subscription.updated") == 2
    listed = sdk.v1.events.list(params={"type": "checkout.session.completed"}).data
    assert [e.data.object.id for e in listed] == [sess.id]


def test_the_schedule_guards_cancelation_and_can_be_released(sdk: stripe.StripeClient,
                                                            standin: StripeStandin) -> None:
    cus = sdk.v1.customers.create(params={"payment_method": "pm_card_visa"})
    pm = sdk.v1.payment_methods.list(params={"customer": cus.id}).data[0]
    sub = sdk.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": "price_starter"}],
                                              "default_payment_method": pm.id})
    sched = sdk.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    with pytest.raises(stripe.InvalidRequestError, match="managed by the subscription schedule"):
        sdk.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    released = sdk.v1.subscription_schedules.release(sched.id)
    assert (released.status, released.released_subscription) == ("released", sub.id)
    assert sdk.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True}).cancel_at_period_end


def test_unknown_urls_and_bad_params_are_400s_and_404s(standin: StripeStandin) -> None:
    auth = {"Authorization": "Bearer sk_test_1"}
    assert httpx.get(f"{standin.url}/v1/nothing", headers=auth).status_code == 404
    bad = httpx.post(f"{standin.url}/v1/prices", headers=auth, data={"currency": "usd", "unit_amount": "x"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "unit_amount"
