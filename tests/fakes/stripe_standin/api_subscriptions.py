"""Endpoints for Checkout Sessions, Billing Portal sessions, Subscriptions and Subscription Schedules."""

from __future__ import annotations

from typing import Any

from . import api_core, forms, schedules, subscriptions
from .errors import StripeError
from .routing import Request, Router, Services
from .store import State

routes = Router()


# checkout sessions

def _checkout_line(st: State, i: int, raw: Any, created: int) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise StripeError.invalid(f"Invalid object: line_items[{i}]", param=f"line_items[{i}]")
    quantity = forms.opt_int(raw, "quantity") or 1
    if forms.opt_str(raw, "price"):
        return {"price": st.get(raw["price"], "price", param=f"line_items[{i}][price]")["id"], "quantity": quantity}
    data = forms.opt_dict(raw, "price_data")
    if not data:
        raise StripeError.invalid("Each line item needs a price or price_data.", param=f"line_items[{i}][price]")
    price_obj = api_core.create_price(st, data, created)
    return {"price": price_obj["id"], "quantity": quantity}


@routes.route("POST", "/v1/checkout/sessions")
def post_checkout_session(svc: Services, req: Request) -> dict[str, Any]:
    st, p = svc.state, req.params
    mode = forms.req_str(p, "mode")
    if mode != "subscription":
        raise StripeError.invalid("The stand-in supports mode=subscription only.", param="mode")
    with st.lock:
        cus = None
        if forms.opt_str(p, "customer"):
            cus = st.get(p["customer"], "customer", param="customer")
        now = st.now(cus)
        lines = [_checkout_line(st, i, raw, now) for i, raw in enumerate(forms.opt_list(p, "line_items"))]
        if len(lines) != 1:
            raise StripeError.invalid("The stand-in supports exactly one line item.", param="line_items")
        price_obj = st.objects[lines[0]["price"]]
        subscriptions.recurring_of(price_obj)
        sub_data = forms.opt_dict(p, "subscription_data")
        session_id = st.new_id("cs_test_", 58)
        amount = price_obj["unit_amount"] * lines[0]["quantity"]
        sess = st.add({
            "id": session_id, "object": "checkout.session", "after_expiration": None,
            "allow_promotion_codes": forms.opt_bool(p, "allow_promotion_codes"), "amount_subtotal": amount,
            "amount_total": amount, "billing_address_collection": None, "cancel_url": forms.opt_str(p, "cancel_url"),
            "client_reference_id": forms.opt_str(p, "client_reference_id"), "created": now,
            "currency": price_obj["currency"], "customer": cus["id"] if cus else None,
            "customer_creation": None if cus else "always", "customer_details": None,
            "customer_email": forms.opt_str(p, "customer_email"), "expires_at": now + 24 * 3600, "invoice": None,
            "livemode": False, "locale": forms.opt_str(p, "locale"), "metadata": forms.merge_metadata({}, p),
            "mode": mode, "payment_intent": None, "payment_method_types": ["card"], "payment_status": "unpaid",
            "setup_intent": None, "status": "open", "subscription": None,
            "success_url": forms.opt_str(p, "success_url"), "ui_mode": "hosted",
            "url": f"{svc.base_url}/checkout/{session_id}",
            "_clock": cus["_clock"] if cus else None, "_lines": lines,
            "_subscription_metadata": forms.merge_metadata({}, sub_data),
        })
        return render_session(st, sess, req.expand)


def render_session(st: State, sess: dict[str, Any], expand: list[str]) -> dict[str, Any]:
    body = st.render(sess, [e for e in expand if e != "line_items"])
    if "line_items" in expand:
        body["line_items"] = line_items(st, sess)
    return body


def line_items(st: State, sess: dict[str, Any]) -> dict[str, Any]:
    data = []
    for n, line in enumerate(sess["_lines"]):
        price_obj = st.objects[line["price"]]
        amount = price_obj["unit_amount"] * line["quantity"]
        data.append({"id": f"li_{sess['id'][8:30]}{n}", "object": "item", "amount_discount": 0,
                     "amount_subtotal": amount, "amount_tax": 0, "amount_total": amount,
                     "currency": price_obj["currency"], "description": st.objects[price_obj["product"]]["name"],
                     "price": st.render(price_obj), "quantity": line["quantity"]})
    return {"object": "list", "data": data, "has_more": False, "url": f"/v1/checkout/sessions/{sess['id']}/line_items"}


@routes.route("GET", "/v1/checkout/sessions/{session_id}")
def get_checkout_session(svc: Services, req: Request, session_id: str) -> dict[str, Any]:
    with svc.state.lock:
        return render_session(svc.state, svc.state.get(session_id, "checkout.session"), req.expand)


@routes.route("GET", "/v1/checkout/sessions/{session_id}/line_items")
def get_checkout_line_items(svc: Services, req: Request, session_id: str) -> dict[str, Any]:
    with svc.state.lock:
        return line_items(svc.state, svc.state.get(session_id, "checkout.session"))


@routes.route("POST", "/v1/checkout/sessions/{session_id}/expire")
def post_checkout_expire(svc: Services, req: Request, session_id: str) -> dict[str, Any]:
    st = svc.state
    with st.lock:
        sess = st.get(session_id, "checkout.session")
        if sess["status"] != "open":
            raise StripeError.invalid(f"Only open Checkout Sessions can be expired; this one is {sess['status']}.")
        sess["status"] = "expired"
        st.emit("checkout.session.expired", sess)
        return render_session(st, sess, req.expand)


@routes.route("GET", "/v1/checkout/sessions")
def list_checkout_sessions(svc: Services, req: Request) -> dict[str, Any]:
    st, p = svc.state, req.params
    with st.lock:
        found = st.all("checkout.session", lambda s: forms.opt_str(p, "customer") in (None, s["customer"])
                       and forms.opt_str(p, "subscription") in (None, s["subscription"]))
        return st.list_of(found, p, "/v1/checkout/sessions")


# billing portal

@routes.route("POST", "/v1/billing_portal/sessions")
def post_portal_session(svc: Services, req: Request) -> dict[str, Any]:
    st = svc.state
    with st.lock:
        cus = st.get(forms.req_str(req.params, "customer"), "customer", param="customer")
        session_id = st.new_id("bps_")
        sess = st.add({
            "id": session_id, "object": "billing_portal.session", "configuration": "bpc_standin",
            "created": st.now(cus), "customer": cus["id"], "flow": None, "livemode": False, "locale": None,
            "on_behalf_of": None, "return_url": forms.opt_str(req.params, "return_url"),
            "url": f"{svc.base_url}/portal/{session_id}", "_clock": cus["_clock"],
        })
        return st.render(sess)


# subscriptions

@routes.route("POST", "/v1/subscriptions")
def post_subscription(svc: Services, req: Request) -> dict[str, Any]:
    st, p = svc.state, req.params
    behavior = forms.opt_str(p, "payment_behavior") or "allow_incomplete"
    if behavior not in ("allow_incomplete", "default_incomplete", "error_if_incomplete"):
        raise StripeError.invalid(f"Invalid payment_behavior: {behavior}", param="payment_behavior")
    with st.lock:
        cus = st.get(forms.req_str(p, "customer"), "customer", param="customer")
        items = forms.opt_list(p, "items")
        if len(items) != 1 or not isinstance(items[0], dict):
            raise StripeError.invalid("The stand-in supports exactly one subscription item.", param="items")
        price_obj = st.get(forms.req_str(items[0], "price"), "price", param="items[0][price]")
        pm_id = forms.opt_str(p, "default_payment_method")
        if pm_id and st.get(pm_id, "payment_method", "default_payment_method")["customer"] != cus["id"]:
            raise StripeError.invalid("The default payment method must be attached to the customer.",
                                      param="default_payment_method")
        sub = subscriptions.create(st, cus, price_obj, quantity=forms.opt_int(items[0], "quantity") or 1,
                                   metadata=forms.merge_metadata({}, p), default_payment_method=pm_id,
                                   payment_behavior=behavior, now=st.now(cus))
        return st.render(sub, req.expand)


@routes.route("GET", "/v1/subscriptions/{sub_id}")
def get_subscription(svc: Services, req: Request, sub_id: str) -> dict[str, Any]:
    with svc.state.lock:
        return svc.state.render(svc.state.get(sub_id, "subscription"), req.expand)


@routes.route("GET", "/v1/subscriptions")
def list_subscriptions(svc: Services, req: Request) -> dict[str, Any]:
    st, p = svc.state, req.params
    status = forms.opt_str(p, "status")

    def wanted(s: dict[str, Any]) -> bool:
        if status == "all":
            ok = True
        elif status:
            ok = s["status"] == status
        else:
            ok = s["status"] not in ("canceled", "incomplete_expired")
        return ok and forms.opt_str(p, "customer") in (None, s["customer"]) and \
            forms.opt_str(p, "price") in (None, s["items"]["data"][0]["price"]["id"])

    with st.lock:
        return st.list_of(st.all("subscription", wanted), p, "/v1/subscriptions")


@routes.route("POST", "/v1/subscriptions/{sub_id}")
def post_subscription_update(svc: Services, req: Request, sub_id: str) -> dict[str, Any]:
    st, p = svc.state, req.params
    with st.lock:
        sub = st.get(sub_id, "subscription")
        now = st.now(sub)
        touches_cancel = "cancel_at_period_end" in p or "cancel_at" in p
        if sub["schedule"] and touches_cancel:
            raise StripeError.invalid(
                f"The subscription is managed by the subscription schedule `{sub['schedule']}`, and updating any "
                "cancelation behavior directly is not allowed. Please update the schedule instead.")
        if sub["status"] in ("canceled", "incomplete_expired") and set(p) - {"metadata", "expand"}:
            raise StripeError.invalid("A canceled subscription can only update its metadata.")
        new_price, quantity = _requested_item(st, sub, p)
        before = st.render(sub)
        sub["metadata"] = forms.merge_metadata(sub["metadata"], p)
        if "default_payment_method" in p:
            pm_id = forms.opt_str(p, "default_payment_method")
            if pm_id and st.get(pm_id, "payment_method", "default_payment_method")["customer"] != sub["customer"]:
                raise StripeError.invalid("The default payment method must be attached to the customer.",
                                          param="default_payment_method")
            sub["default_payment_method"] = pm_id
        if forms.opt_bool(p, "cancel_at_period_end") is not None:
            subscriptions.set_cancel_at_period_end(st, sub, forms.opt_bool(p, "cancel_at_period_end"), now)
        if "cancel_at" in p:
            cancel_at = forms.opt_int(p, "cancel_at")
            sub.update({"cancel_at": cancel_at, "cancel_at_period_end": False,
                        "canceled_at": now if cancel_at else None})
        item = sub["items"]["data"][0]
        if new_price["id"] != item["price"]["id"] or quantity != item["quantity"]:
            behavior = forms.opt_str(p, "proration_behavior") or "create_prorations"
            if behavior not in schedules.PRORATION_BEHAVIORS:
                raise StripeError.invalid(f"Invalid proration_behavior: {behavior}", param="proration_behavior")
            subscriptions.change_price(st, sub, new_price, quantity=quantity, proration_behavior=behavior,
                                       now=now, before=before,
                                       payment_behavior=forms.opt_str(p, "payment_behavior") or "allow_incomplete")
        else:
            st.emit_changes("customer.subscription.updated", sub, before)
        return st.render(sub, req.expand)


def _requested_item(st: State, sub: dict[str, Any], p: dict[str, Any]) -> tuple[dict[str, Any], int]:
    item = sub["items"]["data"][0]
    current = st.objects.get(item["price"]["id"]) or item["price"]
    items = forms.opt_list(p, "items")
    if not items:
        return current, item["quantity"]
    if len(items) != 1 or not isinstance(items[0], dict):
        raise StripeError.invalid("The stand-in supports exactly one subscription item.", param="items")
    raw = items[0]
    if forms.opt_str(raw, "id") not in (None, item["id"]):
        raise StripeError.invalid(f"Invalid subscription item: {raw['id']}", param="items[0][id]")
    if forms.opt_bool(raw, "deleted"):
        raise StripeError.invalid("The stand-in cannot delete the only item.", param="items[0][deleted]")
    price_id = forms.opt_str(raw, "price")
    new_price = st.get(price_id, "price", param="items[0][price]") if price_id else current
    return new_price, forms.opt_int(raw, "quantity") or item["quantity"]


@routes.route("DELETE", "/v1/subscriptions/{sub_id}")
def delete_subscription(svc: Services, req: Request, sub_id: str) -> dict[str, Any]:
    return svc.state.act(sub_id, "subscription", subscriptions.cancel_now, req.expand)


# subscription schedules

@routes.route("POST", "/v1/subscription_schedules")
def post_schedule(svc: Services, req: Request) -> dict[str, Any]:
    st = svc.state
    sub_id = forms.opt_str(req.params, "from_subscription")
    if not sub_id:
        raise StripeError.invalid("The stand-in creates schedules from_subscription only.", param="from_subscription")
    with st.lock:
        sub = st.get(sub_id, "subscription", param="from_subscription")
        return st.render(schedules.from_subscription(st, sub, st.now(sub)), req.expand)


@routes.route("GET", "/v1/subscription_schedules/{sched_id}")
def get_schedule(svc: Services, req: Request, sched_id: str) -> dict[str, Any]:
    with svc.state.lock:
        return svc.state.render(svc.state.get(sched_id, "subscription_schedule"), req.expand)


@routes.route("GET", "/v1/subscription_schedules")
def list_schedules(svc: Services, req: Request) -> dict[str, Any]:
    st, p = svc.state, req.params
    with st.lock:
        found = st.all("subscription_schedule", lambda s: forms.opt_str(p, "customer") in (None, s["customer"]))
        return st.list_of(found, p, "/v1/subscription_schedules")


@routes.route("POST", "/v1/subscription_schedules/{sched_id}")
def post_schedule_update(svc: Services, req: Request, sched_id: str) -> dict[str, Any]:
    def update(st: Any, sched: dict[str, Any], now: int) -> None:
        schedules.update(st, sched, req.params, now)

    return svc.state.act(sched_id, "subscription_schedule", update, req.expand)


@routes.route("POST", "/v1/subscription_schedules/{sched_id}/release")
def post_schedule_release(svc: Services, req: Request, sched_id: str) -> dict[str, Any]:
    return svc.state.act(sched_id, "subscription_schedule", schedules.release, req.expand)


@routes.route("POST", "/v1/subscription_schedules/{sched_id}/cancel")
def post_schedule_cancel(svc: Services, req: Request, sched_id: str) -> dict[str, Any]:
    return svc.state.act(sched_id, "subscription_schedule", schedules.cancel, req.expand)



