"""The sandbox provider's secure billing portal as pages: checkout, payment method, invoices, cancel.
Only while the provider is the sandbox; a refused form shows its page again with why, never a problem+json."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from agentbilling.api.deps import BillingDep
from agentbilling.api.problems import from_domain
from agentbilling.client import Billing
from agentbilling.domain.card import Badge, Card
from agentbilling.domain.errors import DomainError, InvalidInput, NotFound
from agentbilling.payments.sandbox.provider import CARD_CHARGES_FAIL, CARD_DECLINED, CARD_OK, SandboxProvider, last4
from agentbilling.web.rendering import formatters, locale_of, templates

router = APIRouter(tags=["sandbox portal"])

CardField = Annotated[str, Form()]
CsrfField = Annotated[str, Form()]
CSRF_REFUSED = "This form's security token is missing or wrong. Reload the page and try again."
CONFIRM_CANCEL = "Tick “I want to cancel” to confirm Cancel subscription."

_CONTEXT = {
    "test_cards": [(CARD_OK, "succeeds"), (CARD_CHARGES_FAIL, "charges fail"), (CARD_DECLINED, "declined")],
}


def _provider(billing: Billing) -> SandboxProvider:
    if billing.sandbox is None:
        raise NotFound("The sandbox portal is off: the payment provider is not the sandbox.")
    return billing.sandbox


def csrf_token(billing: Billing, key: str) -> str:
    """The CSRF token of a page's forms, bound to its key (the checkout id, or the portal link's token).

    A form post without the right one is a 403 that changes nothing."""
    return hmac.new(billing.secret.encode(), b"sandbox-portal-csrf:" + key.encode(), hashlib.sha256).hexdigest()


def _csrf_ok(billing: Billing, key: str, given: str) -> bool:
    return hmac.compare_digest(given.encode(), csrf_token(billing, key).encode())


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {**formatters(locale_of(request)), **_CONTEXT, **context},
                                      status_code=status)


def _error_page(request: Request, status: int, message: str) -> HTMLResponse:
    heading = "Not found" if status == 404 else "Forbidden"
    return _page(request, "portal_error.html", status, heading=heading, message=message)


# -- checkout ----------------------------------------------------------------------------------

def _checkout_page(request: Request, billing: Billing, checkout: Any, error: DomainError | None = None) -> Response:
    status = from_domain(error).status if error else 200
    return _page(request, "portal_checkout.html", status, checkout=checkout, error=error and error.detail,
                 csrf=csrf_token(billing, checkout["id"]))


@router.get("/sandbox/checkout/{checkout_id}", response_class=HTMLResponse, summary="The checkout page")
def checkout_page(checkout_id: str, request: Request, billing: BillingDep) -> Response:
    try:
        checkout = _provider(billing).checkout(checkout_id)
    except NotFound as err:
        return _error_page(request, 404, err.detail)
    return _checkout_page(request, billing, checkout)


@router.post("/sandbox/checkout/{checkout_id}", response_class=HTMLResponse, summary="Pay and subscribe")
def pay_checkout(checkout_id: str, request: Request, billing: BillingDep, card: CardField = "",
                 csrf: CsrfField = "") -> Response:
    try:
        checkout = _provider(billing).checkout(checkout_id)
    except NotFound as err:
        return _error_page(request, 404, err.detail)
    if not _csrf_ok(billing, checkout_id, csrf):
        return _error_page(request, 403, CSRF_REFUSED)
    try:
        billing.sandbox_complete_checkout(checkout_id, card)
    except DomainError as err:
        return _checkout_page(request, billing, _provider(billing).checkout(checkout_id), err)
    return RedirectResponse(checkout["return_url"], status_code=303)


# -- the portal --------------------------------------------------------------------------------

def _action(card: Card, customer: Any, billing: Billing) -> str | None:
    """Which of Cancel subscription / Resume subscription the portal offers, if either."""
    if customer is None or customer["subscription_id"] is None:
        return None  # no subscription through this provider (a trial, or an offline deal)
    if customer["cancel_requested_at"] is None:
        return "cancel" if card.badge in (Badge.ACTIVE, Badge.PAYMENT_ISSUE) else None
    ended = card.expires_on is not None and card.expires_on <= billing.now()
    return None if ended else "resume"


def _home(request: Request, billing: Billing, token: str, tenant_id: str, *, cursor: str | None = None,
          error: DomainError | None = None) -> HTMLResponse:
    view = billing.billing_view(tenant_id)
    customer = _provider(billing).customer(tenant_id)
    invoices, next_cursor = billing.invoices(tenant_id, cursor=cursor, limit=20)
    return _page(
        request, "portal_home.html", from_domain(error).status if error else 200,
        token=token, csrf=csrf_token(billing, token), view=view, plan_card=view.cards[0],
        action=_action(view.cards[0], customer, billing), last4=last4(customer and customer["card_number"]),
        invoices=invoices, next_cursor=next_cursor, error=error and error.detail,
    )


@router.get("/sandbox/portal/{token}", response_class=HTMLResponse, summary="The portal: payment method, invoices")
def portal_home(token: str, request: Request, billing: BillingDep, cursor: str | None = None) -> Response:
    try:
        tenant_id = billing.portal_tenant(token)
    except NotFound as err:
        return _error_page(request, 404, err.detail)
    return _home(request, billing, token, tenant_id, cursor=cursor)


def _portal_post(request: Request, billing: Billing, token: str, csrf: str, act: Callable[[str], None]) -> Response:
    """A portal form: check its CSRF token, do it, back to the portal; a refusal shows the portal with why."""
    try:
        tenant_id = billing.portal_tenant(token)
    except NotFound as err:
        return _error_page(request, 404, err.detail)
    if not _csrf_ok(billing, token, csrf):
        return _error_page(request, 403, CSRF_REFUSED)
    try:
        act(tenant_id)
    except DomainError as err:
        return _home(request, billing, token, tenant_id, error=err)
    return RedirectResponse(f"/sandbox/portal/{token}", status_code=303)


@router.post("/sandbox/portal/{token}/payment-methods", response_class=HTMLResponse,
             summary="+ Add payment method: the new default card; open invoices are retried on it")
def add_payment_method(token: str, request: Request, billing: BillingDep, card: CardField = "",
                       csrf: CsrfField = "") -> Response:
    return _portal_post(request, billing, token, csrf, lambda tenant_id: billing.sandbox_add_payment_method(
        tenant_id, card))


@router.post("/sandbox/portal/{token}/cancel", response_class=HTMLResponse, summary="Cancel subscription")
def cancel(token: str, request: Request, billing: BillingDep, csrf: CsrfField = "",
           confirm: Annotated[str, Form()] = "") -> Response:
    def act(tenant_id: str) -> None:
        if confirm != "yes":
            raise InvalidInput(CONFIRM_CANCEL)
        billing.sandbox_cancel(tenant_id)

    return _portal_post(request, billing, token, csrf, act)


@router.post("/sandbox/portal/{token}/resume", response_class=HTMLResponse, summary="Resume subscription")
def resume(token: str, request: Request, billing: BillingDep, csrf: CsrfField = "") -> Response:
    return _portal_post(request, billing, token, csrf, billing.sandbox_resume)


@router.get("/sandbox/portal/{token}/invoices/{invoice_id}", response_class=HTMLResponse,
            summary="A printable invoice")
def invoice_page(token: str, invoice_id: str, request: Request, billing: BillingDep) -> Response:
    try:
        invoice = billing.invoice(billing.portal_tenant(token), invoice_id)
    except NotFound as err:
        return _error_page(request, 404, err.detail)
    return _page(request, "portal_invoice.html", token=token, invoice=invoice)
