"""Endpoints for Invoices (read, list, pay, finalize, void, mark uncollectible) and Invoice Items."""

from __future__ import annotations

from typing import Any

from . import api_core, forms, invoicing, objects
from .errors import StripeError
from .routing import Request, Router, Services

routes = Router()


@routes.route("GET", "/v1/invoices/{invoice_id}")
def get_invoice(svc: Services, req: Request, invoice_id: str) -> dict[str, Any]:
    with svc.state.lock:
        return svc.state.render(svc.state.get(invoice_id, "invoice"), req.expand)


@routes.route("GET", "/v1/invoices/{invoice_id}/lines")
def get_invoice_lines(svc: Services, req: Request, invoice_id: str) -> dict[str, Any]:
    with svc.state.lock:
        return svc.state.render(svc.state.get(invoice_id, "invoice")["lines"])


@routes.route("POST", "/v1/invoices")
def post_invoice(svc: Services, req: Request) -> dict[str, Any]:
    """A one-off draft invoice of the customer's pending invoice items (those of `subscription` if
    given); finalize and pay it as usual. Only `pending_invoice_items_behavior=include` is played."""
    st, p = svc.state, req.params
    with st.lock:
        cus = st.get(forms.req_str(p, "customer"), "customer", param="customer")
        now = st.now(cus)
        sub = st.get(p["subscription"], "subscription", param="subscription") if forms.opt_str(p, "subscription") \
            else None
        if (forms.opt_str(p, "pending_invoice_items_behavior") or "exclude") != "include":
            raise StripeError.invalid("The stand-in only creates invoices of pending invoice items "
                                      "(pending_invoice_items_behavior=include).",
                                      param="pending_invoice_items_behavior")
        currency = (forms.opt_str(p, "currency") or (sub or cus).get("currency") or "usd").lower()
        inv = invoicing.create_draft(st, cus, sub=sub, billing_reason="manual", currency=currency,
                                     period=(now, now), now=now)
        inv["description"] = forms.opt_str(p, "description")
        inv["metadata"] = forms.merge_metadata({}, p)
        if forms.opt_str(p, "auto_advance") is not None:
            inv["auto_advance"] = forms.opt_bool(p, "auto_advance")
        st.emit("invoice.created", inv)
        return st.render(inv, req.expand)


@routes.route("GET", "/v1/invoices")
def list_invoices(svc: Services, req: Request) -> dict[str, Any]:
    st, p = svc.state, req.params
    with st.lock:
        found = st.all("invoice", lambda i: forms.opt_str(p, "customer") in (None, i["customer"])
                       and forms.opt_str(p, "subscription") in (None, i["subscription"])
                       and forms.opt_str(p, "status") in (None, i["status"]))
        return st.list_of(found, p, "/v1/invoices")


@routes.route("POST", "/v1/invoices/{invoice_id}")
def post_invoice_update(svc: Services, req: Request, invoice_id: str) -> dict[str, Any]:
    st, p = svc.state, req.params
    with st.lock:
        inv = st.get(invoice_id, "invoice")
        before = st.render(inv)
        inv["metadata"] = forms.merge_metadata(inv["metadata"], p)
        if "description" in p:
            inv["description"] = forms.opt_str(p, "description")
        if forms.opt_bool(p, "auto_advance") is not None:
            inv["auto_advance"] = forms.opt_bool(p, "auto_advance")
        st.emit_changes("invoice.updated", inv, before)
        return st.render(inv, req.expand)


@routes.route("DELETE", "/v1/invoices/{invoice_id}")
def delete_invoice(svc: Services, req: Request, invoice_id: str) -> dict[str, Any]:
    st = svc.state
    with st.lock:
        inv = st.get(invoice_id, "invoice")
        if inv["status"] != "draft":
            raise StripeError.invalid("You can only delete draft invoices.")
        for item in st.all("invoiceitem", lambda i: i["invoice"] == inv["id"]):
            item["invoice"] = None
        st.emit("invoice.deleted", inv)
        del st.objects[inv["id"]]
        return {"id": inv["id"], "object": "invoice", "deleted": True}


@routes.route("POST", "/v1/invoices/{invoice_id}/finalize")
def post_finalize(svc: Services, req: Request, invoice_id: str) -> dict[str, Any]:
    return svc.state.act(invoice_id, "invoice", invoicing.finalize, req.expand)


@routes.route("POST", "/v1/invoices/{invoice_id}/pay")
def post_pay(svc: Services, req: Request, invoice_id: str) -> dict[str, Any]:
    """Charge now (the given payment method, else the usual default); a failed charge is a 402."""
    st, p = svc.state, req.params
    with st.lock:
        inv = st.get(invoice_id, "invoice")
        now = st.now(inv)
        if inv["status"] == "paid":
            raise StripeError.invalid("Invoice is already paid.", code="invoice_already_paid")
        if inv["status"] == "draft":
            invoicing.finalize(st, inv, now)
            if inv["status"] == "paid":
                return st.render(inv, req.expand)
        if inv["status"] != "open":
            raise StripeError.invalid(f"You cannot pay an invoice with status {inv['status']}.")
        if forms.opt_bool(p, "paid_out_of_band"):
            invoicing.mark_paid(st, inv, now)
            return st.render(inv, req.expand)
        pm = None
        if forms.opt_str(p, "payment_method"):
            pm = api_core.resolve_payment_method(st, p["payment_method"], now)
            api_core.attach(st, pm, st.objects[inv["customer"]])
        elif invoicing.payment_method_for(st, inv) is None:
            raise StripeError.invalid("This customer has no attached payment source or default payment method. "
                                      "Please consider adding a default payment method.")
        decline = invoicing.attempt_payment(st, inv, now, automatic=False, pm=pm)
    if decline is not None:
        raise StripeError.card_declined(decline)
    with st.lock:
        return st.render(inv, req.expand)


@routes.route("POST", "/v1/invoices/{invoice_id}/void")
def post_void(svc: Services, req: Request, invoice_id: str) -> dict[str, Any]:
    return svc.state.act(invoice_id, "invoice", invoicing.void, req.expand)


@routes.route("POST", "/v1/invoices/{invoice_id}/mark_uncollectible")
def post_uncollectible(svc: Services, req: Request, invoice_id: str) -> dict[str, Any]:
    return svc.state.act(invoice_id, "invoice", invoicing.mark_uncollectible, req.expand)


# invoice items

@routes.route("POST", "/v1/invoiceitems")
def post_invoice_item(svc: Services, req: Request) -> dict[str, Any]:
    """A charge on a draft invoice (`invoice=`), else pending until the customer's next invoice."""
    st, p = svc.state, req.params
    with st.lock:
        cus = st.get(forms.req_str(p, "customer"), "customer", param="customer")
        now = st.now(cus)
        quantity = forms.opt_int(p, "quantity") or 1
        price_obj = None
        if forms.opt_str(p, "price") or forms.opt_dict(p, "pricing").get("price"):
            price_id = forms.opt_str(p, "price") or forms.opt_dict(p, "pricing")["price"]
            price_obj = st.get(price_id, "price", param="price")
            amount, currency = price_obj["unit_amount"] * quantity, price_obj["currency"]
        else:
            amount = forms.req_int(p, "amount")
            currency = forms.req_str(p, "currency").lower()
        inv = st.get(p["invoice"], "invoice", param="invoice") if forms.opt_str(p, "invoice") else None
        sub_id = forms.opt_str(p, "subscription")
        if sub_id:
            st.get(sub_id, "subscription", param="subscription")
        if inv is not None:
            if inv["customer"] != cus["id"]:
                raise StripeError.invalid("The invoice belongs to another customer.", param="invoice")
            if inv["status"] != "draft":
                raise StripeError.invalid(f"You can only add invoice items to draft invoices; {inv['id']} is "
                                          f"{inv['status']}.", param="invoice")
            if inv["currency"] != currency:
                raise StripeError.invalid("The invoice item's currency must match the invoice's.", param="currency")
            sub_id = sub_id or inv["subscription"]
        period = forms.opt_dict(p, "period")
        item = objects.invoice_item(
            st, cus=cus, amount=amount, currency=currency, description=forms.opt_str(p, "description"), now=now,
            sub_id=sub_id, quantity=quantity, price_obj=price_obj, metadata=forms.merge_metadata({}, p),
            period=(forms.req_int(period, "start"), forms.req_int(period, "end")) if period else None)
        if inv is not None:
            invoicing.attach_item(st, inv, item)
        st.emit("invoiceitem.created", item)
        return st.render(item, req.expand)


@routes.route("GET", "/v1/invoiceitems/{item_id}")
def get_invoice_item(svc: Services, req: Request, item_id: str) -> dict[str, Any]:
    with svc.state.lock:
        return svc.state.render(svc.state.get(item_id, "invoiceitem"), req.expand)


@routes.route("GET", "/v1/invoiceitems")
def list_invoice_items(svc: Services, req: Request) -> dict[str, Any]:
    st, p = svc.state, req.params
    pending = forms.opt_bool(p, "pending")
    with st.lock:
        found = st.all("invoiceitem", lambda i: forms.opt_str(p, "customer") in (None, i["customer"])
                       and forms.opt_str(p, "invoice") in (None, i["invoice"])
                       and pending in (None, i["invoice"] is None))
        return st.list_of(found, p, "/v1/invoiceitems")


@routes.route("DELETE", "/v1/invoiceitems/{item_id}")
def delete_invoice_item(svc: Services, req: Request, item_id: str) -> dict[str, Any]:
    st = svc.state
    with st.lock:
        item = st.get(item_id, "invoiceitem")
        if item["invoice"]:
            inv = st.objects[item["invoice"]]
            if inv["status"] != "draft":
                raise StripeError.invalid("You cannot delete an invoice item on a finalized invoice.")
            invoicing.detach_item(inv, item)
        st.emit("invoiceitem.deleted", item)
        item["deleted"] = True
        return {"id": item["id"], "object": "invoiceitem", "deleted": True}


# credit notes (a refund of a paid invoice)

@routes.route("POST", "/v1/credit_notes")
def post_credit_note(svc: Services, req: Request) -> dict[str, Any]:
    """A credit note on a paid invoice, refunded to the card (`refund_amount`); the stand-in plays
    only the whole-amount form: `amount` or `refund_amount`, at most what is left to credit."""
    st, p = svc.state, req.params
    with st.lock:
        inv = st.get(forms.req_str(p, "invoice"), "invoice", param="invoice")
        now = st.now(inv)
        if inv["status"] != "paid":
            raise StripeError.invalid("The stand-in only credits paid invoices.", param="invoice")
        amount = forms.opt_int(p, "refund_amount") or forms.opt_int(p, "amount") or 0
        left = inv["amount_paid"] - inv.get("post_payment_credit_notes_amount", 0)
        if not 0 < amount <= left:
            raise StripeError.invalid(f"The credit note's amount must be between 1 and {left}.", param="amount")
        inv["post_payment_credit_notes_amount"] = inv.get("post_payment_credit_notes_amount", 0) + amount
        note = st.add({
            "id": st.new_id("cn_"), "object": "credit_note", "amount": amount, "created": now,
            "currency": inv["currency"], "customer": inv["customer"], "invoice": inv["id"],
            "memo": forms.opt_str(p, "memo"), "reason": forms.opt_str(p, "reason"), "refund_amount": amount,
            "status": "issued", "type": "post_payment", "metadata": forms.merge_metadata({}, p),
            "_clock": inv["_clock"],
        })
        st.emit("credit_note.created", note)
        return st.render(note, req.expand)


@routes.route("GET", "/v1/credit_notes")
def list_credit_notes(svc: Services, req: Request) -> dict[str, Any]:
    st, p = svc.state, req.params
    with st.lock:
        found = st.all("credit_note", lambda n: forms.opt_str(p, "invoice") in (None, n["invoice"])
                       and forms.opt_str(p, "customer") in (None, n["customer"]))
        return st.list_of(found, p, "/v1/credit_notes")
