"""The payment provider, behind one interface: the sandbox (service/sandbox.py) or Stripe.

agentbilling tells the provider what to do (open a checkout, charge an invoice) and learns what
happened only from the provider's signed webhooks. A webhook is a notification: on each one the
service reads the object it names from the provider (as Stripe advises), so duplicates and any
delivery order end in the provider's latest state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from agentbilling.domain.plans import Plan


class WebhookRejected(Exception):
    """A delivery that is not the provider's: a bad signature, a stale timestamp, a malformed body."""


@dataclass(frozen=True, slots=True)
class Checkout:
    id: str
    url: str


@dataclass(frozen=True, slots=True)
class InvoiceFacts:
    """An invoice the provider made and charged itself (the first one, at checkout)."""

    id: str
    currency: str
    total: int
    paid_at: datetime


@dataclass(frozen=True, slots=True)
class ProviderSubscription:
    """A paid plan as the provider holds it."""

    id: str
    tenant_id: str
    customer: str
    plan_id: str
    started_at: datetime
    cancel_requested_at: datetime | None  # Cancel subscription in the portal, unless resumed since
    first_invoice: InvoiceFacts


@dataclass(frozen=True, slots=True)
class ChargeState:
    """What became of an invoice the service asked the provider to charge."""

    invoice_id: str
    tenant_id: str
    paid_at: datetime | None
    failures: int
    first_failed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Notification:
    """A verified provider event: what it is about; the service reads the object itself."""

    id: str
    type: str
    tenant_id: str | None
    subscription: str | None = None
    invoice: str | None = None
    raw: Mapping[str, Any] | None = None


class PaymentProvider(Protocol):
    name: str

    def create_checkout(self, tenant_id: str, plan: Plan, now: datetime, base_url: str) -> Checkout: ...

    def portal_url(self, tenant_id: str, base_url: str) -> str: ...

    def charge(self, tenant_id: str, invoice_id: str, amount: int, currency: str, attempt: str,
               now: datetime) -> None:
        """Charge the tenant's default payment method, once per `attempt`; the outcome comes by webhook."""

    def subscription(self, subscription_id: str) -> ProviderSubscription | None: ...

    def charge_state(self, invoice_id: str) -> ChargeState | None: ...

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        """The event of a delivery whose signature and timestamp check out, else WebhookRejected."""

    def deliver_pending(self) -> int:
        """Deliver the events not yet answered (the sandbox's outbox); how many went."""
