"""Endpoints for products, prices, customers, payment methods, events and test clocks."""

from __future__ import annotations

import time
from typing import Any

from . import forms, objects
from .cards import card_for_number, card_for_token, refuse_if_declined
from .errors import StripeError
from .routing import Request, Router, Services
from .store import State

routes = Router()


# products and prices

def create_price(st: State, params: dict[str, Any], created: int) -> dict[str, Any]:
    currency = forms.req_str(params, "currency").lower()
    unit_amount = forms.req_int(params, "unit_amount")
    product_id = forms.opt_str(params, "product")
    if product_id:
        st.get(product_id, "product", param="product")
    else:
        data = forms.opt_dict(params, "product_data")
        if not data:
            raise StripeError.invalid("You must specify either `product` or `product_data`.", param="product")
        product_id = objects.product(st, forms.req_str(data, "name"), created,
                                     forms.merge_metadata({}, data))["id"]
    recurring = forms.opt_dict(params, "recurring") or None
    if recurring is not None and recurring.get("interval") not in ("day", "week", "month", "year"):
        raise StripeError.invalid("Invalid recurring[interval]", param="recurring[interval]")
    return objects.price(st, unit_amount=unit_amount, currency=currency, product_id=product_id,
                         recurring=recurring, created=created, price_id=forms.opt_str(params, "id"),
                         nickname=forms.opt_str(params, "nickname"), lookup_key=forms.opt_str(params, "lookup_key"),
                         metadata=forms.merge_metadata({}, params))


@routes.route("POST", "/v1/products")
def post_product(svc: Services, req: Request) -> dict[str, Any]:
    st = svc.state
    with st.lock:
        prod = objects.product(st, forms.req_str(req.params, "name"), int(time.time()),
                               forms.merge_metadata({}, req.params))
        st.emit("product.created", prod)
        return st.render(prod, req.expand)


@routes.route("GET", "/v1/products/{product_id}")
def get_product(svc: Services, req: Request, product_id: str) -> dict[str, Any]:
    with svc.state.lock:
        return svc.state.render(svc.state.get(product_id, "product"), req.expand)


@routes.route("POST", "/v1/prices")
def post_price(svc: Services, req: Request) -> dict[str, Any]:
    st = svc.state
    with st.lock:
        price_obj = create_price(st, req.params, int(time.time()))
        st.emit("price.created", price_obj)
        return st.render(price_obj, req.expand)


@routes.route("GET", "/v1/prices/{price_id}")
def get_price(svc: Services, req: Request, price_id: str) -> dict[str, Any]:
    with svc.state.lock:
        return svc.state.render(svc.state.get(price_id, "price"), req.expand)


@routes.route("POST", "/v1/prices/{price_id}")
def post_price_update(svc: Services, req: Request, price_id: str) -> dict[str, Any]:
    st = svc.state
    with st.lock:
        price_obj = st.get(price_id, "price")
        before = st.render(price_obj)
        for name in ("nickname", "lookup_key"):
            if name in req.params:
                price_obj[name] = forms.opt_str(req.params, name)
        if forms.opt_bool(req.params, "active") is not None:
            price_obj["active"] = forms.opt_bool(req.params, "active")
        price_obj["metadata"] = forms.merge_metadata(price_obj["metadata"], req.params)
        st.emit_changes("price.updated", price_obj, before)
        return st.render(price_obj, req.expand)


@routes.route("GET", "/v1/prices")
def list_prices(svc: Services, req: Request) -> dict[str, Any]:
    st, p = svc.state, req.params
    keys = [str(k) for k in forms.opt_list(p, "lookup_keys")]
    with st.lock:
        found = st.all("price", lambda o: (forms.opt_str(p, "product") in (None, o["product"]))
                       and (not keys or o["lookup_key"] in keys)
                       and (forms.opt_bool(p, "active") in (None, o["active"])))
        return st.list_of(found, p, "/v1/prices")


# customers

def _apply_default_pm(st: State, cus: dict[str, Any], params: dict[str, Any]) -> None:
    settings = forms.opt_dict(params, "invoice_settings")
    if "default_payment_method" not in settings:
        return
    pm_id = forms.opt_str(settings, "default_payment_method")
    if pm_id is not None:
        pm = st.objects.get(pm_id)
        if pm is None or pm.get("object") != "payment_method" or pm["customer"] != cus["id"]:
            raise StripeError.invalid(f"The customer does not have a payment method with the ID {pm_id}. The "
                                      "payment method must be attached to the customer.",
                                      param="invoice_settings[default_payment_method]")
    cus["invoice_settings"]["default_payment_method"] = pm_id


@routes.route("POST", "/v1/customers")
def post_customer(svc: Services, req: Request) -> dict[str, Any]:
    st, p = svc.state, req.params
    with st.lock:
        clock_id = forms.opt_str(p, "test_clock")
        if clock_id:
            st.get(clock_id, "test_helpers.test_clock", param="test_clock")
        created = st.now({"_clock": clock_id})
        cus = objects.customer(st, clock_id=clock_id, created=created, params={
            k: forms.opt_str(p, k) for k in ("email", "name", "description", "phone")})
        cus["metadata"] = forms.merge_metadata({}, p)
        st.emit("customer.created", cus)
        pm_id = forms.opt_str(p, "payment_method")
        if pm_id:
            attach(st, resolve_payment_method(st, pm_id, created, param="payment_method"), cus)
        _apply_default_pm(st, cus, p)
        return st.render(cus, req.expand)


@routes.route("GET", "/v1/customers/{customer_id}")
def get_customer(svc: Services, req: Request, customer_id: str) -> dict[str, Any]:
    with svc.state.lock:
        return svc.state.render(svc.state.get(customer_id, "customer"), req.expand)


@routes.route("POST", "/v1/customers/{customer_id}")
def post_customer_update(svc: Services, req: Request, customer_id: str) -> dict[str, Any]:
    st, p = svc.state, req.params
    with st.lock:
        cus = st.get(customer_id, "customer")
        before = st.render(cus)
        for name in ("email", "name", "description", "phone"):
            if name in p:
                cus[name] = forms.opt_str(p, name)
        cus["metadata"] = forms.merge_metadata(cus["metadata"], p)
        _apply_default_pm(st, cus, p)
        st.emit_changes("customer.updated", cus, before)
        return st.render(cus, req.expand)


@routes.route("DELETE", "/v1/customers/{customer_id}")
def delete_customer(svc: Services, req: Request, customer_id: str) -> dict[str, Any]:
    st = svc.state
    with st.lock:
        cus = st.get(customer_id, "customer")
        st.emit("customer.deleted", cus)
        cus["deleted"] = True
        return {"id": cus["id"], "object": "customer", "deleted": True}


@routes.route("GET", "/v1/customers")
def list_customers(svc: Services, req: Request) -> dict[str, Any]:
    st, p = svc.state, req.params
    with st.lock:
        found = st.all("customer", lambda c: forms.opt_str(p, "email") in (None, c["email"])
                       and forms.opt_str(p, "test_clock") in (None, c["test_clock"]))
        return st.list_of(found, p, "/v1/customers")


# payment methods

def resolve_payment_method(st: State, pm_id: str, created: int, param: str = "payment_method") -> dict[str, Any]:
    """A stored payment method, or a fresh one for a test id such as `pm_card_visa`."""
    card = card_for_token(pm_id)
    if card is not None:
        return objects.payment_method(st, card, created=created, exp_month=12, exp_year=2034)
    return st.get(pm_id, "payment_method", param=param)


def attach(st: State, pm: dict[str, Any], cus: dict[str, Any]) -> None:
    if pm["customer"] == cus["id"]:
        return
    if pm["customer"] is not None:
        raise StripeError.invalid("The payment method you provided has already been attached to a customer.",
                                  param="payment_method")
    refuse_if_declined(pm["_card"])
    pm["customer"] = cus["id"]
    st.emit("payment_method.attached", pm)


@routes.route("POST", "/v1/payment_methods")
def post_payment_method(svc: Services, req: Request) -> dict[str, Any]:
    st, p = svc.state, req.params
    if (forms.opt_str(p, "type") or "card") != "card":
        raise StripeError.invalid("The stand-in supports type=card only.", param="type")
    card_params = forms.opt_dict(p, "card")
    token = forms.opt_str(card_params, "token")
    if token:
        card = card_for_token(token)
        if card is None:
            raise StripeError.missing("token", token, "card[token]")
    else:
        card = card_for_number(forms.req_str(card_params, "number"))
    with st.lock:
        pm = objects.payment_method(
            st, card, created=st.now(), exp_month=forms.opt_int(card_params, "exp_month") or 12,
            exp_year=forms.opt_int(card_params, "exp_year") or 2034,
            billing_details={k: v for k, v in forms.opt_dict(p, "billing_details").items() if k != "address"})
        pm["metadata"] = forms.merge_metadata({}, p)
        return st.render(pm, req.expand)


@routes.route("GET", "/v1/payment_methods/{pm_id}")
def get_payment_method(svc: Services, req: Request, pm_id: str) -> dict[str, Any]:
    st = svc.state
    with st.lock:
        return st.render(resolve_payment_method(st, pm_id, st.now(), param="id"), req.expand)


@routes.route("POST", "/v1/payment_methods/{pm_id}/attach")
def post_attach(svc: Services, req: Request, pm_id: str) -> dict[str, Any]:
    st = svc.state
    with st.lock:
        cus = st.get(forms.req_str(req.params, "customer"), "customer", param="customer")
        pm = resolve_payment_method(st, pm_id, st.now(cus), param="id")
        attach(st, pm, cus)
        return st.render(pm, req.expand)


@routes.route("POST", "/v1/payment_methods/{pm_id}/detach")
def post_detach(svc: Services, req: Request, pm_id: str) -> dict[str, Any]:
    st = svc.state
    with st.lock:
        pm = st.get(pm_id, "payment_method")
        if pm["customer"] is None:
            raise StripeError.invalid("The payment method is not attached to a customer.")
        cus = st.objects[pm["customer"]]
        if cus["invoice_settings"]["default_payment_method"] == pm["id"]:
            cus["invoice_settings"]["default_payment_method"] = None
        for sub in st.all("subscription", lambda s: s["default_payment_method"] == pm["id"]):
            sub["default_payment_method"] = None
        pm["customer"] = None
        st.emit("payment_method.detached", pm)
        return st.render(pm, req.expand)


@routes.route("GET", "/v1/payment_methods")
def list_payment_methods(svc: Services, req: Request) -> dict[str, Any]:
    return _list_pms(svc, req, forms.req_str(req.params, "customer"))


@routes.route("GET", "/v1/customers/{customer_id}/payment_methods")
def list_customer_payment_methods(svc: Services, req: Request, customer_id: str) -> dict[str, Any]:
    return _list_pms(svc, req, customer_id)


def _list_pms(svc: Services, req: Request, customer_id: str) -> dict[str, Any]:
    st = svc.state
    with st.lock:
        st.get(customer_id, "customer", param="customer")
        found = st.all("payment_method", lambda pm: pm["customer"] == customer_id)
        return st.list_of(found, req.params, f"/v1/customers/{customer_id}/payment_methods")


# events

@routes.route("GET", "/v1/events/{event_id}")
def get_event(svc: Services, req: Request, event_id: str) -> dict[str, Any]:
    with svc.state.lock:
        return svc.state.render(svc.state.get(event_id, "event"))


@routes.route("GET", "/v1/events")
def list_events(svc: Services, req: Request) -> dict[str, Any]:
    st, p = svc.state, req.params
    types = [str(t) for t in forms.opt_list(p, "types")] + [t for t in [forms.opt_str(p, "type")] if t]
    with st.lock:
        found = st.all("event", lambda e: not types or any(
            e["type"] == t or (t.endswith("*") and e["type"].startswith(t[:-1])) for t in types))
        return st.list_of(found, p, "/v1/events")


# test clocks

@routes.route("POST", "/v1/test_helpers/test_clocks")
def post_test_clock(svc: Services, req: Request) -> dict[str, Any]:
    st = svc.state
    with st.lock:
        clock = objects.clock(st, frozen_time=forms.req_int(req.params, "frozen_time"),
                              name=forms.opt_str(req.params, "name"), created=int(time.time()))
        st.emit("test_helpers.test_clock.created", clock)
        return st.render(clock)


@routes.route("GET", "/v1/test_helpers/test_clocks/{clock_id}")
def get_test_clock(svc: Services, req: Request, clock_id: str) -> dict[str, Any]:
    with svc.state.lock:
        return svc.state.render(svc.state.get(clock_id, "test_helpers.test_clock"))


@routes.route("GET", "/v1/test_helpers/test_clocks")
def list_test_clocks(svc: Services, req: Request) -> dict[str, Any]:
    st = svc.state
    with st.lock:
        found = st.all("test_helpers.test_clock", lambda c: c["id"] != st.default_clock_id)
        return st.list_of(found, req.params, "/v1/test_helpers/test_clocks")


@routes.route("DELETE", "/v1/test_helpers/test_clocks/{clock_id}")
def delete_test_clock(svc: Services, req: Request, clock_id: str) -> dict[str, Any]:
    st = svc.state
    with st.lock:
        clock = st.get(clock_id, "test_helpers.test_clock")
        if clock_id == st.default_clock_id:
            raise StripeError.invalid("The stand-in's default clock cannot be deleted.")
        for obj in list(st.objects.values()):  # as Stripe does, the clock takes its objects with it
            if obj.get("_clock") == clock_id:
                obj["deleted"] = True
        clock["deleted"] = True
        return {"id": clock_id, "object": "test_helpers.test_clock", "deleted": True}


@routes.route("POST", "/v1/test_helpers/test_clocks/{clock_id}/advance")
def post_advance(svc: Services, req: Request, clock_id: str) -> dict[str, Any]:
    st = svc.state
    with st.lock:
        clock = st.get(clock_id, "test_helpers.test_clock")
        svc.clocks.start_advance(clock, forms.req_int(req.params, "frozen_time"))
        return st.render(clock)
