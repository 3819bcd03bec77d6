"""Invoices: drafts and their lines, pending invoice items, finalizing, charging and retries.

Charging looks for a payment method the way Stripe does: the invoice's, then the
subscription's default, then the customer's `invoice_settings.default_payment_method`.
"""

from __future__ import annotations

from typing import Any

from . import objects
from .errors import StripeError
from .periods import DAY
from .store import State

OPEN_STATUSES = ("draft", "open")


def create_draft(st: State, cus: dict[str, Any], *, sub: dict[str, Any] | None, billing_reason: str,
                 currency: str, period: tuple[int, int], now: int) -> dict[str, Any]:
    """A draft invoice holding the customer's pending invoice items (those of `sub`, or of none)."""
    inv = objects.invoice(st, cus=cus, sub=sub, billing_reason=billing_reason, currency=currency,
                          period_start=period[0], period_end=period[1], now=now)
    sub_id = sub["id"] if sub else None
    for item in st.all("invoiceitem", lambda i: i["customer"] == cus["id"] and i["invoice"] is None):
        if item["subscription"] in (None, sub_id) and item["currency"] == currency:
            attach_item(st, inv, item)
    if sub is not None:
        sub["latest_invoice"] = inv["id"]
    return inv


def add_subscription_line(st: State, inv: dict[str, Any], sub: dict[str, Any], period: tuple[int, int]) -> None:
    item = sub["items"]["data"][0]
    price_obj = item["price"]
    name = product_name(st, price_obj)
    inv["lines"]["data"].append(objects.invoice_line(
        st, inv, amount=price_obj["unit_amount"] * item["quantity"],
        description=f"{item['quantity']} × {name} (at ${price_obj['unit_amount'] / 100:.2f} / "
                    f"{price_obj['recurring']['interval']})",
        period=period, quantity=item["quantity"], price_obj=price_obj, proration=False,
        sub_id=sub["id"], sub_item_id=item["id"], item_id=None))
    recompute(inv)


def attach_item(st: State, inv: dict[str, Any], item: dict[str, Any]) -> None:
    """Put an invoice item on a draft invoice as a line."""
    if inv["status"] != "draft":
        raise StripeError.invalid(
            f"You can only add invoice items to draft invoices; {inv['id']} is {inv['status']}.", param="invoice")
    item["invoice"] = inv["id"]
    sub_item_id = None
    if item["proration"] and item["subscription"]:
        sub = st.objects.get(item["subscription"])
        sub_item_id = sub["items"]["data"][0]["id"] if sub else None
    inv["lines"]["data"].append(objects.invoice_line(
        st, inv, amount=item["amount"], description=item["description"] or "",
        period=(item["period"]["start"], item["period"]["end"]), quantity=item["quantity"],
        price_obj=item["_price"], proration=item["proration"], sub_id=item["subscription"],
        sub_item_id=sub_item_id, item_id=item["id"]))
    recompute(inv)


def detach_item(inv: dict[str, Any], item: dict[str, Any]) -> None:
    inv["lines"]["data"] = [line for line in inv["lines"]["data"] if line["invoice_item"] != item["id"]]
    item["invoice"] = None
    recompute(inv)


def recompute(inv: dict[str, Any]) -> None:
    total = sum(line["amount"] for line in inv["lines"]["data"])
    inv["lines"]["total_count"] = len(inv["lines"]["data"])
    inv["subtotal"] = inv["total"] = total
    if inv["status"] == "draft":
        inv["amount_due"] = inv["amount_remaining"] = max(total, 0)


def finalize(st: State, inv: dict[str, Any], now: int) -> None:
    """draft → open: number, hosted page, customer credit applied; an invoice with nothing due is paid."""
    if inv["status"] != "draft":
        raise StripeError.invalid(f"This invoice is already finalized ({inv['status']}).")
    cus = st.objects[inv["customer"]]
    balance = cus["balance"]  # negative = credit
    inv["starting_balance"] = balance
    if inv["total"] < 0:
        due, cus["balance"] = 0, balance + inv["total"]
    else:
        applied = min(-balance, inv["total"]) if balance < 0 else 0
        due, cus["balance"] = inv["total"] - applied, balance + applied
    inv["ending_balance"] = cus["balance"]
    cus["_invoice_count"] += 1
    inv.update({
        "status": "open", "number": f"{cus['invoice_prefix']}-{cus['_invoice_count']:04d}",
        "amount_due": due, "amount_remaining": due, "effective_at": now,
        "hosted_invoice_url": f"{st.config.base_url}/invoice/{inv['id']}",
        "invoice_pdf": f"{st.config.base_url}/invoice/{inv['id']}/pdf",
    })
    inv["status_transitions"]["finalized_at"] = now
    st.emit("invoice.finalized", inv)
    if due == 0:
        mark_paid(st, inv, now)


def payment_method_for(st: State, inv: dict[str, Any]) -> dict[str, Any] | None:
    sub = st.objects.get(inv["subscription"] or "")
    cus = st.objects[inv["customer"]]
    for pm_id in (inv["default_payment_method"], (sub or {}).get("default_payment_method"),
                  cus["invoice_settings"]["default_payment_method"]):
        if pm_id and pm_id in st.objects and st.objects[pm_id]["customer"] == cus["id"]:
            return st.objects[pm_id]
    return None


def attempt_payment(st: State, inv: dict[str, Any], now: int, *, automatic: bool,
                    pm: dict[str, Any] | None = None) -> str | None:
    """Charge an open invoice; returns None when paid, else the decline code. Emits the invoice events."""
    if inv["status"] != "open":
        raise StripeError.invalid(f"You cannot pay an invoice with status {inv['status']}.")
    pm = pm or payment_method_for(st, inv)
    inv["attempt_count"] += 1
    inv["attempted"] = True
    decline = "no_payment_method" if pm is None else pm["_card"].decline_on_charge or pm["_card"].decline_on_attach
    if decline is None:
        mark_paid(st, inv, now)
        return None
    if automatic:
        _schedule_retry(st, inv, now)
    st.emit("invoice.payment_failed", inv)
    _after_failure(st, inv, now, exhausted=automatic and inv["next_payment_attempt"] is None)
    return decline


def _schedule_retry(st: State, inv: dict[str, Any], now: int) -> None:
    if inv["_first_attempt_at"] is None:
        inv["_first_attempt_at"] = now
    inv["_auto_attempts"] += 1
    retries = st.config.retry_days
    k = inv["_auto_attempts"]
    inv["next_payment_attempt"] = inv["_first_attempt_at"] + retries[k - 1] * DAY if k <= len(retries) else None


def mark_paid(st: State, inv: dict[str, Any], now: int) -> None:
    inv.update({"status": "paid", "amount_paid": inv["amount_due"], "amount_remaining": 0,
                "next_payment_attempt": None})
    inv["status_transitions"]["paid_at"] = now
    st.emit("invoice.paid", inv)
    st.emit("invoice.payment_succeeded", inv)
    sub = st.objects.get(inv["subscription"] or "")
    if sub and sub["status"] in ("past_due", "unpaid", "incomplete") and not _unpaid_invoices(st, sub):
        before = st.render(sub)
        sub["status"] = "active"
        st.emit_changes("customer.subscription.updated", sub, before)


def _after_failure(st: State, inv: dict[str, Any], now: int, *, exhausted: bool) -> None:
    from .subscriptions import cancel_now  # the two modules call each other; import late

    sub = st.objects.get(inv["subscription"] or "")
    if not sub or sub["status"] in ("canceled", "incomplete_expired"):
        return
    before = st.render(sub)
    if inv["billing_reason"] != "subscription_create" and sub["status"] == "active":
        sub["status"] = "past_due"
    if exhausted and st.config.on_retries_exhausted == "unpaid":
        sub["status"] = "unpaid"
    st.emit_changes("customer.subscription.updated", sub, before)
    if exhausted and st.config.on_retries_exhausted == "cancel":
        cancel_now(st, sub, now, reason="payment_failed")


def _unpaid_invoices(st: State, sub: dict[str, Any]) -> list[dict[str, Any]]:
    return st.all("invoice", lambda i: i["subscription"] == sub["id"] and i["status"] == "open"
                  and i["amount_remaining"] > 0)


def open_invoices(st: State, customer_id: str) -> list[dict[str, Any]]:
    return st.all("invoice", lambda i: i["customer"] == customer_id and i["status"] == "open")


def void(st: State, inv: dict[str, Any], now: int) -> None:
    if inv["status"] not in ("open", "uncollectible"):
        raise StripeError.invalid(f"You can only void open or uncollectible invoices; this one is {inv['status']}.")
    inv.update({"status": "void", "next_payment_attempt": None, "amount_remaining": 0})
    inv["status_transitions"]["voided_at"] = now
    st.emit("invoice.voided", inv)


def mark_uncollectible(st: State, inv: dict[str, Any], now: int) -> None:
    if inv["status"] != "open":
        raise StripeError.invalid(f"You can only mark open invoices uncollectible; this one is {inv['status']}.")
    inv.update({"status": "uncollectible", "next_payment_attempt": None})
    inv["status_transitions"]["marked_uncollectible_at"] = now
    st.emit("invoice.marked_uncollectible", inv)


def stop_retries(st: State, sub: dict[str, Any]) -> None:
    for inv in st.all("invoice", lambda i: i["subscription"] == sub["id"] and i["status"] == "open"):
        inv["next_payment_attempt"] = None


def charge_new_invoice(st: State, inv: dict[str, Any], now: int) -> str | None:
    """Finalize a draft and, if anything is due, charge it (with automatic retries)."""
    finalize(st, inv, now)
    if inv["status"] == "open":
        return attempt_payment(st, inv, now, automatic=True)
    return None


def product_name(st: State, price_obj: dict[str, Any]) -> str:
    prod = st.objects.get(price_obj["product"])
    return prod["name"] if prod else price_obj["product"]
