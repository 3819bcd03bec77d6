"""What a person does on Stripe's hosted pages, as test-only endpoints (no API key), plus tiny HTML pages.

- `POST /_standin/checkout/{id}/complete` `card=...`: pays the Checkout Session.
- `POST /_standin/portal/{customer}/cancel` and `/resume`: cancel at period end, or undo.
- `POST /_standin/customers/{customer}/payment_methods` `card=...`: adds a card, makes it the
  default (customer and subscriptions, as the portal does) and retries open invoices at once.
Each answers after the webhooks it caused were delivered.
"""

from __future__ import annotations

import html
from typing import Any

from . import api_core, forms, invoicing, objects, schedules, subscriptions
from .cards import card_for_number, refuse_if_declined
from .errors import StripeError
from .routing import Request, Response, Router, Services

routes = Router()


def complete_checkout(svc: Services, session_id: str, card_number: str, email: str | None = None) -> dict[str, Any]:
    """Pay a Checkout Session: customer, payment method, subscription and its paid first invoice.

    4000000000000002 (declined) and 4000000000000341 (every charge fails) both get a 402 here:
    Checkout only completes when the first payment succeeds; nothing is created.
    """
    st = svc.state
    with st.lock:
        sess = st.get(session_id, "checkout.session")
        if sess["status"] != "open":
            raise StripeError.invalid(f"This Checkout Session is {sess['status']}, not open.")
        card = card_for_number(card_number)
        refuse_if_declined(card)
        if card.decline_on_charge:
            raise StripeError.card_declined(card.decline_on_charge)
        with st.hold_events() as held:
            cus = st.objects.get(sess["customer"] or "")
            now = st.now(cus)
            if cus is None:
                cus = objects.customer(st, clock_id=None, created=now, params={
                    "email": email or sess["customer_email"], "name": None, "description": None, "phone": None})
                st.emit("customer.created", cus)
            pm = objects.payment_method(st, card, created=now, exp_month=12, exp_year=2034,
                                        billing_details={"email": cus["email"]})
            api_core.attach(st, pm, cus)
            line = sess["_lines"][0]
            sub = subscriptions.create(st, cus, st.objects[line["price"]], quantity=line["quantity"],
                                       metadata=dict(sess["_subscription_metadata"]), default_payment_method=pm["id"],
                                       payment_behavior="allow_incomplete", now=now)
            sess.update({"status": "complete", "payment_status": "paid", "customer": cus["id"],
                         "subscription": sub["id"], "invoice": sub["latest_invoice"],
                         "customer_details": {"email": cus["email"], "name": cus["name"], "phone": None,
                                              "address": None, "tax_exempt": "none", "tax_ids": []}})
            completed = st.emit("checkout.session.completed", sess)
            held.sort(key=lambda e: e["id"] != completed["id"])  # delivered first, with subscription set
        redirect = (sess["success_url"] or "").replace("{CHECKOUT_SESSION_ID}", sess["id"])
        result = {"checkout_session": st.render(sess), "subscription": st.render(sub), "redirect_url": redirect}
    svc.webhooks.wait()
    return result


def portal_cancel(svc: Services, customer_id: str, cancel: bool, subscription_id: str | None = None) -> dict[str, Any]:
    """Cancel at period end (or resume). A pending schedule is released first, as the change is dropped."""
    st = svc.state
    with st.lock:
        sub = _live_subscription(svc, customer_id, subscription_id)
        now = st.now(sub)
        if not cancel and not sub["cancel_at_period_end"]:
            raise StripeError.invalid("This subscription is not set to cancel; there is nothing to resume.")
        before = st.render(sub)
        if cancel and sub["schedule"]:
            schedules.release(st, st.objects[sub["schedule"]], now)
            before["schedule"] = None  # already reported by the release's own update
        subscriptions.set_cancel_at_period_end(st, sub, cancel, now)
        st.emit_changes("customer.subscription.updated", sub, before)
        result = st.render(sub)
    svc.webhooks.wait()
    return result


def add_card(svc: Services, customer_id: str, card_number: str) -> dict[str, Any]:
    """Attach a card, make it the default everywhere, and retry the customer's open invoices with it."""
    st = svc.state
    with st.lock:
        cus = st.get(customer_id, "customer")
        card = card_for_number(card_number)
        now = st.now(cus)
        pm = objects.payment_method(st, card, created=now, exp_month=12, exp_year=2034)
        api_core.attach(st, pm, cus)  # a card refused at once raises 402 here, before anything changes
        before = st.render(cus)
        cus["invoice_settings"]["default_payment_method"] = pm["id"]
        st.emit_changes("customer.updated", cus, before)
        for sub in st.all("subscription", lambda s: s["customer"] == cus["id"] and s["default_payment_method"]):
            before = st.render(sub)
            sub["default_payment_method"] = pm["id"]
            st.emit_changes("customer.subscription.updated", sub, before)
        retried = []
        for inv in invoicing.open_invoices(st, cus["id"]):
            if inv["amount_remaining"] > 0:
                decline = invoicing.attempt_payment(st, inv, now, automatic=False, pm=pm)
                retried.append({"invoice": inv["id"], "status": inv["status"], "decline_code": decline})
        result = {"payment_method": st.render(pm), "retried": retried}
    svc.webhooks.wait()
    return result


def _live_subscription(svc: Services, customer_id: str, subscription_id: str | None) -> dict[str, Any]:
    st = svc.state
    st.get(customer_id, "customer")
    if subscription_id:
        sub = st.get(subscription_id, "subscription")
        if sub["customer"] != customer_id:
            raise StripeError.invalid("That subscription belongs to another customer.", param="subscription")
        return sub
    live = st.all("subscription", lambda s: s["customer"] == customer_id and s["status"] in subscriptions.LIVE_STATUSES)
    if not live:
        raise StripeError.invalid(f"Customer {customer_id} has no active subscription.")
    return live[-1]


def _card(req: Request) -> str:
    return forms.req_str(req.params, "card")


@routes.route("POST", "/_standin/checkout/{session_id}/complete")
def post_complete(svc: Services, req: Request, session_id: str) -> dict[str, Any]:
    return complete_checkout(svc, session_id, _card(req), forms.opt_str(req.params, "email"))


@routes.route("POST", "/_standin/portal/{customer_id}/cancel")
def post_portal_cancel(svc: Services, req: Request, customer_id: str) -> dict[str, Any]:
    return portal_cancel(svc, customer_id, True, forms.opt_str(req.params, "subscription"))


@routes.route("POST", "/_standin/portal/{customer_id}/resume")
def post_portal_resume(svc: Services, req: Request, customer_id: str) -> dict[str, Any]:
    return portal_cancel(svc, customer_id, False, forms.opt_str(req.params, "subscription"))


@routes.route("POST", "/_standin/customers/{customer_id}/payment_methods")
def post_add_card(svc: Services, req: Request, customer_id: str) -> dict[str, Any]:
    return add_card(svc, customer_id, _card(req))


# pages (enough for a link to open in a browser during a demo)

def _page(title: str, body: str) -> Response:
    return Response(200, f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>{body}",
                    "text/html")


@routes.route("GET", "/checkout/{session_id}")
def checkout_page(svc: Services, req: Request, session_id: str) -> Response:
    with svc.state.lock:
        sess = svc.state.get(session_id, "checkout.session")
        amount = f"{sess['amount_total'] / 100:.2f} {sess['currency'].upper()} / period"
        status = sess["status"]
    return _page("Stripe stand-in Checkout", (
        f"<p>{html.escape(amount)} — status {html.escape(status)}</p>"
        f"<form method=post action='/_standin/checkout/{html.escape(session_id)}/complete'>"
        "<input name=card value=4242424242424242><button>Pay</button></form>"))


@routes.route("GET", "/portal/{session_id}")
def portal_page(svc: Services, req: Request, session_id: str) -> Response:
    with svc.state.lock:
        sess = svc.state.get(session_id, "billing_portal.session")
    cus = html.escape(sess["customer"])
    return _page("Stripe stand-in customer portal", (
        f"<form method=post action='/_standin/portal/{cus}/cancel'><button>Cancel subscription</button></form>"
        f"<form method=post action='/_standin/portal/{cus}/resume'><button>Renew subscription</button></form>"
        f"<form method=post action='/_standin/customers/{cus}/payment_methods'>"
        "<input name=card value=4242424242424242><button>Add card</button></form>"
        f"<p><a href='{html.escape(sess['return_url'] or '')}'>Return</a></p>"))


@routes.route("GET", "/invoice/{invoice_id}")
def invoice_page(svc: Services, req: Request, invoice_id: str) -> Response:
    with svc.state.lock:
        inv = svc.state.get(invoice_id, "invoice")
        rows = "".join(f"<li>{html.escape(line['description'] or '')}: {line['amount'] / 100:.2f}</li>"
                       for line in inv["lines"]["data"])
        title = f"Invoice {inv['number'] or inv['id']} — {inv['status']}"
    return _page(title, f"<ul>{rows}</ul>")
