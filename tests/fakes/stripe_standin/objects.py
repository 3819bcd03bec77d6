"""Builders of Stripe-shaped objects (ids, `object`, `created`, `livemode`, the usual fields).

Each builder stores the new object in the state and returns it; behaviour lives elsewhere.
"""

from __future__ import annotations

from typing import Any

from .cards import TestCard
from .store import State


def product(st: State, name: str, created: int, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    return st.add({
        "id": st.new_id("prod_", 14), "object": "product", "active": True, "created": created,
        "default_price": None, "description": None, "images": [], "livemode": False,
        "metadata": metadata or {}, "name": name, "type": "service", "updated": created, "url": None,
    })


def price(
    st: State, *, unit_amount: int, currency: str, product_id: str, recurring: dict[str, Any] | None,
    created: int, price_id: str | None = None, nickname: str | None = None,
    lookup_key: str | None = None, metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    if recurring is not None:
        recurring = {
            "interval": recurring.get("interval", "month"),
            "interval_count": int(recurring.get("interval_count") or 1),
            "meter": None, "trial_period_days": None, "usage_type": "licensed",
        }
    return st.add({
        "id": price_id or st.new_id("price_"), "object": "price", "active": True,
        "billing_scheme": "per_unit", "created": created, "currency": currency, "custom_unit_amount": None,
        "livemode": False, "lookup_key": lookup_key, "metadata": metadata or {}, "nickname": nickname,
        "product": product_id, "recurring": recurring, "tax_behavior": "unspecified", "tiers_mode": None,
        "transform_quantity": None, "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount, "unit_amount_decimal": str(unit_amount),
    })


def customer(st: State, *, clock_id: str | None, created: int, params: dict[str, Any]) -> dict[str, Any]:
    return st.add({
        "id": st.new_id("cus_", 14), "object": "customer", "address": None, "balance": 0,
        "created": created, "currency": None, "default_source": None, "delinquent": False,
        "description": params.get("description"), "email": params.get("email"),
        "invoice_prefix": st.new_id("", 8).upper(), "invoice_settings": {
            "custom_fields": None, "default_payment_method": None, "footer": None, "rendering_options": None,
        },
        "livemode": False, "metadata": {}, "name": params.get("name"), "phone": params.get("phone"),
        "preferred_locales": [], "shipping": None, "tax_exempt": "none", "test_clock": clock_id,
        "_clock": clock_id, "_invoice_count": 0,
    })


def payment_method(st: State, card: TestCard, *, created: int, exp_month: int, exp_year: int,
                   billing_details: dict[str, Any] | None = None) -> dict[str, Any]:
    details = {"address": None, "email": None, "name": None, "phone": None, **(billing_details or {})}
    return st.add({
        "id": st.new_id("pm_"), "object": "payment_method", "allow_redisplay": "unspecified",
        "billing_details": details, "card": {
            "brand": card.brand, "checks": {"address_line1_check": None, "address_postal_code_check": None,
                                            "cvc_check": "pass"},
            "country": "US", "display_brand": card.brand, "exp_month": exp_month, "exp_year": exp_year,
            "fingerprint": st.new_id("", 16), "funding": "credit", "last4": card.last4, "networks": {
                "available": [card.brand], "preferred": None}, "wallet": None,
        },
        "created": created, "customer": None, "livemode": False, "metadata": {}, "type": "card",
        "_card": card,
    })


def subscription_item(st: State, sub_id: str, price_obj: dict[str, Any], quantity: int, created: int) -> dict[str, Any]:
    return {
        "id": st.new_id("si_", 14), "object": "subscription_item", "created": created,
        "current_period_start": None, "current_period_end": None, "discounts": [], "metadata": {},
        "price": st.render(price_obj), "quantity": quantity, "subscription": sub_id, "tax_rates": [],
    }


def subscription(st: State, *, cus: dict[str, Any], price_obj: dict[str, Any], quantity: int, now: int,
                 metadata: dict[str, str], default_payment_method: str | None) -> dict[str, Any]:
    sub_id = st.new_id("sub_")
    return st.add({
        "id": sub_id, "object": "subscription", "application": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": now, "cancel_at": None, "cancel_at_period_end": False, "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically", "created": now, "currency": price_obj["currency"],
        "current_period_start": None, "current_period_end": None, "customer": cus["id"],
        "days_until_due": None, "default_payment_method": default_payment_method, "description": None,
        "discounts": [], "ended_at": None, "items": {
            "object": "list", "data": [subscription_item(st, sub_id, price_obj, quantity, now)],
            "has_more": False, "total_count": 1, "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        "latest_invoice": None, "livemode": False, "metadata": metadata, "pending_invoice_item_interval": None,
        "pending_update": None, "schedule": None, "start_date": now, "status": "incomplete",
        "test_clock": cus["test_clock"], "trial_end": None, "trial_start": None,
        "_clock": cus["_clock"], "_period_index": 0,
    })


def invoice(st: State, *, cus: dict[str, Any], sub: dict[str, Any] | None, billing_reason: str,
            currency: str, period_start: int, period_end: int, now: int) -> dict[str, Any]:
    inv_id = st.new_id("in_")
    parent = None
    if sub is not None:
        parent = {"type": "subscription_details", "quote_details": None, "subscription_details": {
            "metadata": dict(sub["metadata"]), "subscription": sub["id"]}}
    return st.add({
        "id": inv_id, "object": "invoice", "account_country": "US", "account_name": "Stripe stand-in",
        "amount_due": 0, "amount_overpaid": 0, "amount_paid": 0, "amount_remaining": 0, "amount_shipping": 0,
        "attempt_count": 0, "attempted": False, "auto_advance": True,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "status": None},
        "billing_reason": billing_reason, "collection_method": "charge_automatically", "created": now,
        "currency": currency, "customer": cus["id"], "customer_email": cus.get("email"),
        "customer_name": cus.get("name"), "default_payment_method": None, "description": None,
        "discounts": [], "due_date": None, "effective_at": None, "ending_balance": None, "footer": None,
        "hosted_invoice_url": None, "invoice_pdf": None, "last_finalization_error": None,
        "lines": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                  "url": f"/v1/invoices/{inv_id}/lines"},
        "livemode": False, "metadata": {}, "next_payment_attempt": None, "number": None, "parent": parent,
        "period_end": period_end, "period_start": period_start, "starting_balance": 0, "status": "draft",
        "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None,
                               "voided_at": None},
        "subscription": sub["id"] if sub else None, "subtotal": 0, "total": 0,
        "test_clock": cus["test_clock"], "webhooks_delivered_at": None,
        "_clock": cus["_clock"], "_auto_attempts": 0, "_first_attempt_at": None,
    })


def invoice_line(st: State, inv: dict[str, Any], *, amount: int, description: str, period: tuple[int, int],
                 quantity: int, price_obj: dict[str, Any] | None, proration: bool,
                 sub_id: str | None, sub_item_id: str | None, item_id: str | None) -> dict[str, Any]:
    if sub_item_id:
        parent = {"type": "subscription_item_details", "invoice_item_details": None,
                  "subscription_item_details": {"invoice_item": item_id, "proration": proration,
                                                "proration_details": {"credited_items": None},
                                                "subscription": sub_id, "subscription_item": sub_item_id}}
    else:
        parent = {"type": "invoice_item_details", "subscription_item_details": None,
                  "invoice_item_details": {"invoice_item": item_id, "proration": proration,
                                           "proration_details": {"credited_items": None},
                                           "subscription": sub_id}}
    pricing = None
    if price_obj is not None:
        pricing = {"type": "price_details", "unit_amount_decimal": price_obj["unit_amount_decimal"],
                   "price_details": {"price": price_obj["id"], "product": price_obj["product"]}}
    return {
        "id": st.new_id("il_"), "object": "line_item", "amount": amount, "currency": inv["currency"],
        "description": description, "discount_amounts": [], "discountable": True, "discounts": [],
        "invoice": inv["id"], "invoice_item": item_id, "livemode": False, "metadata": {}, "parent": parent,
        "period": {"start": period[0], "end": period[1]},
        "price": st.render(price_obj) if price_obj else None, "pricing": pricing, "proration": proration,
        "quantity": quantity, "subscription": sub_id,
        "type": "subscription" if sub_item_id and not item_id else "invoiceitem",
    }


def invoice_item(st: State, *, cus: dict[str, Any], amount: int, currency: str, description: str | None,
                 now: int, sub_id: str | None, period: tuple[int, int] | None = None, quantity: int = 1,
                 price_obj: dict[str, Any] | None = None, proration: bool = False,
                 metadata: dict[str, str] | None = None) -> dict[str, Any]:
    parent = None
    if sub_id:
        parent = {"type": "subscription_details",
                  "subscription_details": {"subscription": sub_id, "subscription_item": None}}
    pricing = None
    if price_obj is not None:
        pricing = {"type": "price_details", "unit_amount_decimal": price_obj["unit_amount_decimal"],
                   "price_details": {"price": price_obj["id"], "product": price_obj["product"]}}
    start, end = period or (now, now)
    return st.add({
        "id": st.new_id("ii_"), "object": "invoiceitem", "amount": amount, "currency": currency,
        "customer": cus["id"], "date": now, "description": description, "discountable": True,
        "discounts": [], "invoice": None, "livemode": False, "metadata": metadata or {}, "parent": parent,
        "period": {"start": start, "end": end}, "pricing": pricing, "proration": proration,
        "quantity": quantity, "subscription": sub_id, "test_clock": cus["test_clock"],
        "_clock": cus["_clock"], "_price": price_obj,
    })


def schedule_phase(*, start: int, end: int, price_id: str, quantity: int, currency: str,
                   proration_behavior: str, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "add_invoice_items": [], "application_fee_percent": None, "automatic_tax": {"enabled": False,
                                                                                      "liability": None},
        "billing_cycle_anchor": None, "collection_method": None, "currency": currency,
        "default_payment_method": None, "default_tax_rates": [], "description": None, "discounts": [],
        "end_date": end, "invoice_settings": None,
        "items": [{"discounts": [], "metadata": {}, "price": price_id, "quantity": quantity, "tax_rates": []}],
        "metadata": metadata or {}, "on_behalf_of": None, "proration_behavior": proration_behavior,
        "start_date": start, "transfer_data": None, "trial_end": None,
    }


def schedule(st: State, *, sub: dict[str, Any], phases: list[dict[str, Any]], now: int) -> dict[str, Any]:
    return st.add({
        "id": st.new_id("sub_sched_"), "object": "subscription_schedule", "application": None,
        "canceled_at": None, "completed_at": None, "created": now, "current_phase": None,
        "customer": sub["customer"], "default_settings": {
            "application_fee_percent": None, "automatic_tax": {"enabled": False, "liability": None},
            "billing_cycle_anchor": "automatic", "collection_method": "charge_automatically",
            "default_payment_method": None, "description": None, "invoice_settings": {"days_until_due": None},
            "on_behalf_of": None, "transfer_data": None},
        "end_behavior": "release", "livemode": False, "metadata": {}, "phases": phases, "released_at": None,
        "released_subscription": None, "status": "active", "subscription": sub["id"],
        "test_clock": sub["test_clock"], "_clock": sub["_clock"],
    })


def clock(st: State, *, frozen_time: int, name: str | None, created: int) -> dict[str, Any]:
    return st.add({
        "id": st.new_id("clock_"), "object": "test_helpers.test_clock", "created": created,
        "deletes_after": created + 30 * 86400, "frozen_time": frozen_time, "livemode": False,
        "name": name, "status": "ready", "status_details": {},
    })
