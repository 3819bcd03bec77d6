"""Subscriptions: creation with the first invoice, price changes with proration, cancelling, renewal.

Periods come from the billing cycle anchor (`period_bounds`), so a Jan 31 start renews on
Feb 28/29, Mar 31, ... without drift. A price change never restarts the period.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import invoicing, objects
from .errors import StripeError
from .periods import human_date, period_bounds, prorate
from .store import State

LIVE_STATUSES = ("active", "past_due", "unpaid", "trialing")


def recurring_of(price_obj: dict[str, Any]) -> tuple[str, int]:
    recurring = price_obj.get("recurring")
    if not recurring:
        raise StripeError.invalid(
            f"The price specified ({price_obj['id']}) is a one-time price; subscriptions need a recurring price.",
            param="items[0][price]")
    return recurring["interval"], recurring["interval_count"]


def set_period(sub: dict[str, Any], index: int) -> tuple[int, int]:
    """Move the subscription to its `index`-th period (top level and on the items, as newer APIs do)."""
    interval, count = recurring_of(sub["items"]["data"][0]["price"])
    start, end = period_bounds(sub["billing_cycle_anchor"], interval, count, index)
    sub["_period_index"] = index
    sub["current_period_start"], sub["current_period_end"] = start, end
    for item in sub["items"]["data"]:
        item["current_period_start"], item["current_period_end"] = start, end
    return start, end


def _will_pay(st: State, inv: dict[str, Any]) -> bool:
    pm = invoicing.payment_method_for(st, inv)
    return pm is not None and not (pm["_card"].decline_on_charge or pm["_card"].decline_on_attach)


def create(st: State, cus: dict[str, Any], price_obj: dict[str, Any], *, quantity: int, metadata: dict[str, str],
           default_payment_method: str | None, payment_behavior: str, now: int) -> dict[str, Any]:
    """A new subscription whose period starts now, with its first invoice (subscription_create) charged."""
    recurring_of(price_obj)
    sub = objects.subscription(st, cus=cus, price_obj=price_obj, quantity=quantity, now=now,
                               metadata=metadata, default_payment_method=default_payment_method)
    period = set_period(sub, 0)
    inv = invoicing.create_draft(st, cus, sub=sub, billing_reason="subscription_create",
                                 currency=price_obj["currency"], period=(now, now), now=now)
    invoicing.add_subscription_line(st, inv, sub, period)
    will_pay = inv["total"] <= 0 or _will_pay(st, inv)
    if not will_pay and payment_behavior == "error_if_incomplete":
        _discard(st, sub, inv)
        raise StripeError.card_declined()
    if will_pay and payment_behavior != "default_incomplete":
        sub["status"] = "active"  # the first payment is known to succeed: created active, as Checkout shows it
    st.emit("customer.subscription.created", sub)
    st.emit("invoice.created", inv)
    invoicing.finalize(st, inv, now)
    if inv["status"] == "open" and payment_behavior != "default_incomplete":
        invoicing.attempt_payment(st, inv, now, automatic=False)
    return sub


def _discard(st: State, sub: dict[str, Any], inv: dict[str, Any]) -> None:
    for line in inv["lines"]["data"]:
        if line["invoice_item"]:
            st.objects[line["invoice_item"]]["invoice"] = None
    st.objects.pop(inv["id"], None)
    st.objects.pop(sub["id"], None)


def change_price(st: State, sub: dict[str, Any], price_obj: dict[str, Any], *, quantity: int,
                 proration_behavior: str, now: int, payment_behavior: str = "allow_incomplete",
                 before: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Switch the item's price now, keeping the period; prorate as asked. Returns the proration invoice.

    `before` is the caller's snapshot when it changed other fields too, so one
    customer.subscription.updated carries all of them.
    """
    item = sub["items"]["data"][0]
    old_price, old_quantity = item["price"], item["quantity"]
    if old_price["id"] == price_obj["id"] and old_quantity == quantity:
        return None
    if price_obj["currency"] != sub["currency"]:
        raise StripeError.invalid("The price's currency must match the subscription's currency.",
                                  param="items[0][price]")
    if recurring_of(price_obj) != recurring_of(old_price):
        raise StripeError.invalid("The stand-in only switches between prices with the same interval.",
                                  param="items[0][price]")
    cus = st.objects[sub["customer"]]
    start, end = sub["current_period_start"], sub["current_period_end"]
    credit = prorate(old_price["unit_amount"] * old_quantity, start, end, now)
    debit = prorate(price_obj["unit_amount"] * quantity, start, end, now)
    prorating = proration_behavior in ("create_prorations", "always_invoice") and (credit or debit)
    if prorating and proration_behavior == "always_invoice" and payment_behavior == "error_if_incomplete":
        probe = {"default_payment_method": None, "subscription": sub["id"], "customer": cus["id"]}
        if debit - credit > 0 and not _will_pay(st, probe):
            raise StripeError.card_declined()
    before = before or st.render(sub)
    item["price"], item["quantity"] = st.render(price_obj), quantity
    if prorating:
        day = human_date(now)
        for amount, text, p in ((-credit, "Unused time on", old_price), (debit, "Remaining time on", price_obj)):
            if amount:
                objects.invoice_item(
                    st, cus=cus, amount=amount, currency=sub["currency"], now=now, sub_id=sub["id"],
                    description=f"{text} {invoicing.product_name(st, p)} after {day}", period=(now, end),
                    quantity=1, price_obj=p, proration=True)
    inv = None
    if prorating and proration_behavior == "always_invoice":
        inv = invoicing.create_draft(st, cus, sub=sub, billing_reason="subscription_update",
                                     currency=sub["currency"], period=(now, now), now=now)
    st.emit_changes("customer.subscription.updated", sub, before)
    if inv is not None:
        st.emit("invoice.created", inv)
        invoicing.charge_new_invoice(st, inv, now)
    return inv


def set_cancel_at_period_end(st: State, sub: dict[str, Any], flag: bool, now: int) -> None:
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise StripeError.invalid("A canceled subscription can only update its metadata.")
    sub["cancel_at_period_end"] = flag
    sub["cancel_at"] = sub["current_period_end"] if flag else None
    sub["canceled_at"] = now if flag else None
    sub["cancellation_details"]["reason"] = "cancellation_requested" if flag else None


def cancel_now(st: State, sub: dict[str, Any], now: int, *, reason: str = "cancellation_requested") -> None:
    """End the subscription at `now` (customer.subscription.deleted); its schedule is canceled too."""
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise StripeError.invalid(f"This subscription is already canceled: {sub['id']}")
    sched = st.objects.get(sub["schedule"] or "")
    if sched and sched["status"] in ("active", "not_started"):
        sched.update({"status": "canceled", "canceled_at": now, "current_phase": None})
        st.emit("subscription_schedule.canceled", sched)
    sub.update({"status": "canceled", "ended_at": now, "canceled_at": sub["canceled_at"] or now})
    sub["cancellation_details"]["reason"] = reason
    invoicing.stop_retries(st, sub)
    st.emit("customer.subscription.deleted", sub)


def renew(st: State, sub: dict[str, Any], at: int) -> Iterator[None]:
    """Roll to the next period, draft its invoice (invoice.created), pause for the receiver, then charge it."""
    cus = st.objects[sub["customer"]]
    before = st.render(sub)
    ended = (sub["current_period_start"], sub["current_period_end"])
    period = set_period(sub, sub["_period_index"] + 1)
    inv = invoicing.create_draft(st, cus, sub=sub, billing_reason="subscription_cycle",
                                 currency=sub["currency"], period=ended, now=at)
    invoicing.add_subscription_line(st, inv, sub, period)
    st.emit_changes("customer.subscription.updated", sub, before)
    st.emit("invoice.created", inv)
    yield  # the receiver may now add invoice items to this draft (POST /v1/invoiceitems invoice=...)
    if st.objects.get(inv["id"]) is inv and inv["status"] == "draft":
        invoicing.charge_new_invoice(st, inv, st.now(sub))


def expire_incomplete(st: State, sub: dict[str, Any], at: int) -> None:
    sub.update({"status": "incomplete_expired", "ended_at": at})
    for inv in st.all("invoice", lambda i: i["subscription"] == sub["id"] and i["status"] == "open"):
        invoicing.void(st, inv, at)
    st.emit("customer.subscription.deleted", sub)
