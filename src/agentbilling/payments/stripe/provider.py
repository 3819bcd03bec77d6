"""Stripe as the payment provider, through the official SDK.
Who owns what (Stripe renews, invoices and retries; the grace period is ours): README.md, "Design decisions"."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import stripe

from agentbilling.domain.errors import Conflict, PaymentFailed
from agentbilling.domain.plans import Catalog, Plan
from agentbilling.payments.provider import (
    Checkout,
    DraftRenewal,
    InvoiceMirror,
    Notification,
    ProviderSubscription,
    WebhookRejected,
)

log = logging.getLogger(__name__)

WEBHOOK_TOLERANCE_SECONDS = 300  # a signed event's timestamp may be this far from now, either way
KIND_OF_REASON = {"subscription_create": "first", "subscription_cycle": "renewal", "subscription_update": "proration"}
STATUS_OF_INVOICE = {"paid": "paid", "open": "open", "void": "void", "uncollectible": "void"}


def _dt(ts: int | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


def _check_timestamp(signature_header: str) -> None:
    """The same tolerance both ways as the sandbox (Standard Webhooks): the stripe SDK refuses only
    old timestamps, so an event signed for ten minutes ahead would pass it."""
    stamps = [part[2:] for part in signature_header.split(",") if part.strip().startswith("t=")]
    try:
        signed_at = int(stamps[0].strip())
    except (IndexError, ValueError):
        raise WebhookRejected("no timestamp in the signature") from None
    if abs(time.time() - signed_at) > WEBHOOK_TOLERANCE_SECONDS:  # wall clock: security time
        raise WebhookRejected("the timestamp is more than 5 minutes away from now")


class StripeProvider:
    """The subscription mirrored as a Stripe Subscription; Checkout and the Customer Portal are Stripe's.

    Periods follow Stripe's (the billing cycle anchor is the plan's anchor). The sessions beyond the
    included ones are added to the renewal invoice while it is a draft (`invoice.created`, before Stripe
    finalizes it). Webhooks are verified with Stripe-Signature on the raw body; each names an object then
    read from Stripe, so duplicates and any delivery order end in Stripe's latest state. With the test
    clock on, every customer lives on one Stripe test clock that follows ours."""
    name = "stripe"
    owns_billing = True

    def __init__(self, *, api_key: str, webhook_secret: str, api_base: str | None, catalog: Catalog,
                 test_clock: bool = False) -> None:
        options: dict[str, Any] = {"max_network_retries": 2}
        if api_base:
            options["base_addresses"] = {"api": api_base.rstrip("/")}
        self.client = stripe.StripeClient(api_key, **options)
        self.webhook_secret = webhook_secret
        self.catalog = catalog
        self.by_price = {p.provider_price_id: p for p in catalog.values() if p.provider_price_id}
        self.test_clock = test_clock
        self._clock_id: str | None = None

    # -- what the service asks of Stripe ----------------------------------------------------

    def create_checkout(self, tenant_id: str, plan: Plan, now: datetime, base_url: str,
                        customer: str | None = None, email: str | None = None) -> Checkout:
        if not plan.provider_price_id:
            raise Conflict(f"The {plan.name} plan has no Stripe price (provider_price_id) in the catalog.")
        if customer is None:
            params: dict[str, Any] = {"metadata": {"tenant_id": tenant_id}}
            if email:
                params["email"] = email
            if self.test_clock:
                params["test_clock"] = self._clock(now)
            customer = self.client.v1.customers.create(params=params).id
        meta = {"tenant_id": tenant_id, "plan_id": plan.id}
        session = self.client.v1.checkout.sessions.create(params={
            "mode": "subscription", "customer": customer,
            "line_items": [{"price": plan.provider_price_id, "quantity": 1}],
            "success_url": f"{base_url}/billing?checkout={{CHECKOUT_SESSION_ID}}", "cancel_url": f"{base_url}/billing",
            "client_reference_id": tenant_id, "metadata": meta, "subscription_data": {"metadata": meta},
        })
        return Checkout(session.id, session.url, customer)

    def portal_url(self, tenant_id: str, base_url: str, customer: str | None = None) -> str:
        if customer is None:
            raise Conflict("There is nothing to manage yet: subscribe to a plan first.")
        return self.client.v1.billing_portal.sessions.create(
            params={"customer": customer, "return_url": f"{base_url}/billing"}).url

    def change_now(self, subscription_id: str, plan: Plan) -> ProviderSubscription | None:
        """Immediately: the price switched and the prorated difference invoiced at once."""
        before = self._facts(self.client.v1.subscriptions.retrieve(subscription_id))
        sub = self.client.v1.subscriptions.retrieve(subscription_id).to_dict()
        if sub.get("schedule"):
            self.client.v1.subscription_schedules.release(sub["schedule"])
        try:
            # R8: paid before it runs. Stripe charges the proration at once and, if that fails,
            # answers 402 and changes nothing (no pending update, no open invoice).
            updated = self.client.v1.subscriptions.update(subscription_id, params={
                "items": [{"id": sub["items"]["data"][0]["id"], "price": plan.provider_price_id}],
                "proration_behavior": "always_invoice", "payment_behavior": "error_if_incomplete"})
        except stripe.CardError as err:
            pending = before.pending if before is not None else None
            if pending is not None and self.catalog.get(pending[0]) is not None:  # as it was: nothing changed
                self.change_later(subscription_id, self.catalog[pending[0]], pending[1])
            raise PaymentFailed("The payment for the new plan failed, so your plan was not changed. Update your "
                                "payment method (Manage) and try again.") from err
        return self._facts(updated)

    def change_later(self, subscription_id: str, plan: Plan, at: datetime) -> ProviderSubscription | None:
        """End of the current period / On custom date: a schedule whose second phase is the new plan."""
        sub = self.client.v1.subscriptions.retrieve(subscription_id).to_dict()
        schedule_id = sub.get("schedule") or self.client.v1.subscription_schedules.create(
            params={"from_subscription": subscription_id}).id
        current = self.client.v1.subscription_schedules.retrieve(schedule_id).to_dict()["phases"][0]
        price = sub["items"]["data"][0]["price"]["id"]
        self.client.v1.subscription_schedules.update(schedule_id, params={"end_behavior": "release", "phases": [
            {"items": [{"price": price}], "start_date": current["start_date"], "end_date": _ts(at)},
            # Prorated from the change's moment, invoiced at once (nothing at a period's start).
            {"items": [{"price": plan.provider_price_id}], "iterations": 1, "proration_behavior": "always_invoice"},
        ]})
        return self.subscription(subscription_id)

    def cancel_change(self, subscription_id: str) -> ProviderSubscription | None:
        schedule = self.client.v1.subscriptions.retrieve(subscription_id).to_dict().get("schedule")
        if schedule:
            self.client.v1.subscription_schedules.release(schedule)
        return self.subscription(subscription_id)

    def end_now(self, subscription_id: str) -> None:
        """A plan that ended unpaid (R10): Stripe stops charging it."""
        try:
            self.client.v1.subscriptions.cancel(subscription_id)
        except stripe.InvalidRequestError as err:  # already canceled
            log.info("stripe: %s not canceled: %s", subscription_id, err.user_message)

    def void(self, tenant_id: str, invoice_id: str) -> None:
        try:
            self.client.v1.invoices.void_invoice(invoice_id)
        except stripe.InvalidRequestError as err:  # paid or void already
            log.info("stripe: %s not voided: %s", invoice_id, err.user_message)

    def expire_checkouts(self, tenant_id: str, customer: str | None) -> None:
        if customer is None:
            return
        for session in self.client.v1.checkout.sessions.list(params={"customer": customer, "limit": 100}).data:
            if session.status == "open":
                try:
                    self.client.v1.checkout.sessions.expire(session.id)
                except stripe.InvalidRequestError as err:  # completed or expired meanwhile
                    log.info("stripe: checkout %s not expired: %s", session.id, err.user_message)

    def add_overage(self, draft: DraftRenewal, amount: int, description: str, key: str) -> None:
        self.client.v1.invoice_items.create(
            params={"customer": draft.customer, "invoice": draft.invoice_id, "amount": amount,
                    "currency": draft.currency, "description": description},
            options={"idempotency_key": key})

    def pending_item(self, customer: str, subscription_id: str, amount: int, currency: str, description: str,
                     key: str) -> str:
        """A charge that the subscription's next invoice (an update's proration invoice) takes along."""
        return self.client.v1.invoice_items.create(
            params={"customer": customer, "subscription": subscription_id, "amount": amount,
                    "currency": currency.lower(), "description": description},
            options={"idempotency_key": key}).id

    def delete_item(self, item_id: str) -> None:
        try:
            self.client.v1.invoice_items.delete(item_id)
        except stripe.InvalidRequestError as err:  # on an invoice already, or gone
            log.info("stripe: invoice item %s not deleted: %s", item_id, err.user_message)

    def final_invoice(self, customer: str, subscription_id: str, currency: str, lines: list[tuple[int, str]],
                      key: str) -> None:
        """The invoice of an ended subscription's last extras (R8a): its items, then one invoice of
        them, finalized and charged; each step under an idempotency key, so it is made once."""
        for i, (amount, description) in enumerate(lines):
            self.pending_item(customer, subscription_id, amount, currency, description, f"{key}-item-{i}")
        invoice = self.client.v1.invoices.create(
            params={"customer": customer, "subscription": subscription_id, "currency": currency.lower(),
                    "pending_invoice_items_behavior": "include", "metadata": {"agentbilling_kind": "final"}},
            options={"idempotency_key": f"{key}-invoice"})
        if invoice.status == "draft":
            invoice = self.client.v1.invoices.finalize_invoice(invoice.id)
        if invoice.status == "open":
            try:
                self.client.v1.invoices.pay(invoice.id)
            except stripe.CardError as err:  # it stays open (owed); Stripe's webhooks say so
                log.info("stripe: final invoice %s not paid: %s", invoice.id, err.user_message)

    def void_renewals_since(self, subscription_id: str, moment: datetime) -> None:
        """Stripe renewed a plan that lapsed at `moment` (R10: nothing is renewed for a plan that
        ended): that renewal is voided, a draft deleted. What was owed before stays open."""
        for inv in self.client.v1.invoices.list(params={"subscription": subscription_id}).data:
            if inv.billing_reason != "subscription_cycle" or inv.created < _ts(moment):
                continue
            try:
                if inv.status == "draft":
                    self.client.v1.invoices.delete(inv.id)
                elif inv.status == "open":
                    self.client.v1.invoices.void_invoice(inv.id)
            except stripe.InvalidRequestError as err:  # paid or voided meanwhile
                log.info("stripe: renewal %s not voided: %s", inv.id, err.user_message)

    def refund_subscription(self, subscription_id: str) -> list[tuple[str, int, str]]:
        """Refund what a subscription that should not exist was paid (one started in a race beside
        the running plan): a credit note refunded to the card for each paid invoice, once each
        (idempotency keys). Returns (invoice, amount, currency) of each refund."""
        refunded = []
        for inv in self.client.v1.invoices.list(params={"subscription": subscription_id, "status": "paid"}).data:
            left = inv.amount_paid - (inv.to_dict().get("post_payment_credit_notes_amount") or 0)
            if left <= 0:
                continue
            self.client.v1.credit_notes.create(
                params={"invoice": inv.id, "refund_amount": left, "reason": "duplicate",
                        "memo": "A second subscription started in a race; the running plan is kept."},
                options={"idempotency_key": f"refund-{inv.id}"})
            refunded.append((inv.id, left, inv.currency.upper()))
        return refunded

    def deliver_pending(self) -> int:
        return 0  # Stripe delivers its own events

    def clock_moved(self, moment: datetime) -> None:
        """The test clock moved: Stripe's follows, and this returns once it is ready (its events applied)."""
        if not self.test_clock or self._clock_id is None:
            return
        clock = self.client.v1.test_helpers.test_clocks.retrieve(self._clock_id)
        if clock.frozen_time >= _ts(moment):
            return
        self.client.v1.test_helpers.test_clocks.advance(self._clock_id, params={"frozen_time": _ts(moment)})
        deadline = time.monotonic() + 120
        while self.client.v1.test_helpers.test_clocks.retrieve(self._clock_id).status != "ready":
            if time.monotonic() > deadline:
                raise TimeoutError("Stripe's test clock did not become ready")
            time.sleep(0.02)

    def _clock(self, now: datetime) -> str:
        if self._clock_id is None:
            self._clock_id = self.client.v1.test_helpers.test_clocks.create(
                params={"frozen_time": _ts(now), "name": "agentbilling"}).id
        return self._clock_id

    # -- webhooks ---------------------------------------------------------------------------

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            event = stripe.Webhook.construct_event(body, lowered.get("stripe-signature", ""), self.webhook_secret,
                                                   tolerance=WEBHOOK_TOLERANCE_SECONDS)
        except (stripe.SignatureVerificationError, ValueError) as err:
            raise WebhookRejected(str(err) or "bad signature") from None
        except (TypeError, AttributeError, KeyError):  # signed, but the SDK cannot read it as an event
            raise WebhookRejected("a signed body that is not an event") from None
        _check_timestamp(lowered.get("stripe-signature", ""))
        event = json.loads(body)  # verified; plain dicts from here
        data = event.get("data") if isinstance(event, dict) else None
        obj = data.get("object") if isinstance(data, dict) else None
        kind = event.get("type") if isinstance(event, dict) else None
        if not isinstance(obj, dict) or not isinstance(kind, str) or not isinstance(event.get("id"), str):
            raise WebhookRejected("a signed event without an id, a type and data.object")
        if not isinstance(obj.get("metadata") or {}, dict):
            raise WebhookRejected("a signed event whose object's metadata is not an object")
        subscription = invoice = None
        if kind == "checkout.session.completed":
            subscription = obj.get("subscription")
        elif kind.startswith("customer.subscription."):
            subscription = obj.get("id")
        elif kind.startswith("subscription_schedule."):
            subscription = obj.get("subscription") or obj.get("released_subscription")
        elif kind.startswith("invoice."):
            invoice = obj.get("id")
        return Notification(id=event["id"], type=kind, tenant_id=(obj.get("metadata") or {}).get("tenant_id"),
                            subscription=subscription, invoice=invoice, raw=event)

    def subscription(self, subscription_id: str) -> ProviderSubscription | None:
        try:
            sub = self.client.v1.subscriptions.retrieve(subscription_id)
        except stripe.InvalidRequestError:
            return None
        return self._facts(sub)

    def _facts(self, obj: Any) -> ProviderSubscription | None:
        sub = obj.to_dict()
        tenant_id = (sub.get("metadata") or {}).get("tenant_id")
        item = sub["items"]["data"][0]
        price_id = item["price"]["id"]
        plan = self.by_price.get(price_id)
        if tenant_id is None or plan is None:
            log.warning("stripe: subscription %s is not one of ours (tenant %r, price %r)", sub["id"], tenant_id,
                        price_id)
            return None
        period_end = _dt(item.get("current_period_end") or sub.get("current_period_end"))
        cancel_at = _dt(sub["cancel_at"]) if sub.get("cancel_at") else (
            period_end if sub.get("cancel_at_period_end") else None)
        pending = None
        if sub.get("schedule"):
            schedule = self.client.v1.subscription_schedules.retrieve(sub["schedule"]).to_dict()
            current = schedule.get("current_phase")
            later = [p for p in schedule["phases"] if current and p["start_date"] >= current["end_date"]]
            if schedule["status"] == "active" and later and later[0]["items"][0]["price"] != price_id:
                nxt = self.by_price.get(later[0]["items"][0]["price"])
                if nxt is not None:
                    pending = (nxt.id, _dt(later[0]["start_date"]))
        return ProviderSubscription(
            id=sub["id"], tenant_id=tenant_id, customer=sub["customer"], plan_id=plan.id,
            started_at=_dt(sub["billing_cycle_anchor"]), cancel_requested_at=None, first_invoice=None,
            status=sub["status"], cancel_at=cancel_at, pending=pending, period_end=period_end,
            ended_at=_dt(sub.get("ended_at")), owned=True,
            ended_by_request=bool(sub.get("cancel_at") or sub.get("cancel_at_period_end")
                                  or (sub.get("cancellation_details") or {}).get("reason") == "cancellation_requested"),
        )

    def invoice_facts(self, invoice_id: str, event_type: str,
                      event_created: int) -> InvoiceMirror | DraftRenewal | None:
        try:
            inv = self.client.v1.invoices.retrieve(invoice_id).to_dict()
        except stripe.InvalidRequestError:
            return None
        details = ((inv.get("parent") or {}).get("subscription_details")) or {}
        sub_id = inv.get("subscription") or details.get("subscription")
        tenant_id = (details.get("metadata") or {}).get("tenant_id")
        if tenant_id is None and sub_id:
            facts = self.subscription(sub_id)
            tenant_id = facts.tenant_id if facts else None
        if tenant_id is None:
            return None
        if inv["status"] == "draft":
            if event_type == "invoice.created" and inv.get("billing_reason") == "subscription_cycle":
                return DraftRenewal(inv["id"], tenant_id, inv["customer"], inv["currency"], _dt(inv["period_start"]),
                                    _dt(inv["period_end"]))
            return None
        data = inv["lines"]["data"]
        start, end = _dt(inv["period_start"]), _dt(inv["period_end"])
        if inv.get("billing_reason") == "subscription_cycle" and data:
            end = _dt(data[0]["period"]["end"])  # the period that ended, and the one it pays for
        return InvoiceMirror(
            id=inv["id"], tenant_id=tenant_id, subscription=sub_id,
            kind=(inv.get("metadata") or {}).get("agentbilling_kind")
            or KIND_OF_REASON.get(inv.get("billing_reason") or "", "other"),
            status=STATUS_OF_INVOICE.get(inv["status"], "open"), currency=inv["currency"].upper(), total=inv["total"],
            lines=[(x.get("description") or "", x.get("quantity") or 1, x["amount"]) for x in data],
            period_start=start, period_end=end, created_at=_dt(inv["created"]),
            paid_at=_dt((inv.get("status_transitions") or {}).get("paid_at")), attempts=inv.get("attempt_count") or 0,
            next_attempt_at=_dt(inv.get("next_payment_attempt")),
            failed_at=_dt(event_created) if event_type == "invoice.payment_failed" else None,
        )
