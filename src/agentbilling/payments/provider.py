"""The payment provider, behind one interface: the sandbox (payments/sandbox/provider.py) or Stripe;
what happened at it is learnt from its signed webhooks only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeGuard

from agentbilling.domain.plans import Plan


class WebhookRejected(Exception):
    """A delivery that is not the provider's: a bad signature, a stale timestamp, a malformed body."""


@dataclass(frozen=True, slots=True)
class Checkout:
    id: str
    url: str
    customer: str | None = None  # the provider's customer it is for, once the provider made one


@dataclass(frozen=True, slots=True)
class InvoiceFacts:
    """An invoice the provider made and charged itself (the first one, at checkout)."""

    id: str
    currency: str
    total: int
    paid_at: datetime


@dataclass(frozen=True, slots=True)
class ProviderSubscription:
    """A paid plan as the provider holds it.

    The sandbox leaves periods, plan changes and invoices to agentbilling (`owned` False): it
    reports the first invoice and when Cancel subscription was asked for. Stripe owns them
    (`owned` True) and reports its status, the moment it ends, its scheduled change and its period.
    """

    id: str
    tenant_id: str
    customer: str
    plan_id: str
    started_at: datetime  # the billing cycle anchor
    cancel_requested_at: datetime | None  # Cancel subscription in the portal, unless resumed since
    first_invoice: InvoiceFacts | None
    status: str = "active"  # the provider's: active, past_due, canceled, incomplete, ...
    cancel_at: datetime | None = None
    pending: tuple[str, datetime] | None = None  # (plan id, from when)
    period_end: datetime | None = None
    ended_at: datetime | None = None
    ended_by_request: bool = False  # cancelled by the tenant, not for want of payment
    owned: bool = False


@dataclass(frozen=True, slots=True)
class ChargeState:
    """What became of an invoice the service asked the provider to charge."""

    invoice_id: str
    tenant_id: str
    paid_at: datetime | None
    failures: int
    first_failed_at: datetime | None


@dataclass(frozen=True, slots=True)
class InvoiceMirror:
    """An invoice the provider made (Stripe's), as it stands there now."""

    id: str
    tenant_id: str
    subscription: str | None
    kind: str  # first, renewal, proration
    status: str  # open, paid, void
    currency: str
    total: int
    lines: list[tuple[str, int, int]]  # description, quantity, amount
    period_start: datetime
    period_end: datetime
    created_at: datetime
    paid_at: datetime | None
    attempts: int
    next_attempt_at: datetime | None
    failed_at: datetime | None  # when this delivery reports a failed attempt


@dataclass(frozen=True, slots=True)
class DraftRenewal:
    """A renewal invoice still open to additions: the sessions beyond the included ones go on it."""

    invoice_id: str
    tenant_id: str
    customer: str
    currency: str
    period_start: datetime  # the period that ended
    period_end: datetime


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
    """What every provider does. One that leaves billing to agentbilling (`owns_billing` False,
    the sandbox) also charges: `charge`, `charge_state`. One that owns it (Stripe) also changes the
    subscription and reports its invoices: `BillingProvider`.

    A webhook is a notification: on each one the service reads the object it names from the
    provider (as Stripe advises), so duplicates and any delivery order end in its latest state."""

    name: str
    owns_billing: bool  # the provider renews, invoices and retries (Stripe); else agentbilling does

    def create_checkout(self, tenant_id: str, plan: Plan, now: datetime, base_url: str,
                        customer: str | None = None, email: str | None = None) -> Checkout: ...

    def portal_url(self, tenant_id: str, base_url: str, customer: str | None = None) -> str: ...

    def clock_moved(self, moment: datetime) -> None:
        """The test clock moved to `moment`: a provider with its own test clocks follows."""

    def charge(self, tenant_id: str, invoice_id: str, amount: int, currency: str, attempt: str,
               now: datetime) -> None:
        """Charge the tenant's default payment method, once per `attempt`; the outcome comes by webhook."""

    def subscription(self, subscription_id: str) -> ProviderSubscription | None: ...

    def charge_state(self, invoice_id: str) -> ChargeState | None: ...

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        """The event of a delivery whose signature and timestamp check out, else WebhookRejected."""

    def deliver_pending(self) -> int:
        """Deliver the events not yet answered (the sandbox's outbox); how many went."""

    def void(self, tenant_id: str, invoice_id: str) -> None:
        """The invoice will not be paid (its plan ended): never charge it again."""

    def expire_checkouts(self, tenant_id: str, customer: str | None) -> None:
        """Close the tenant's open checkouts: a plan runs now."""

    def end_now(self, subscription_id: str) -> None:
        """End a subscription at the provider at once (one started in a race, or one replaced)."""

    def void_renewals_since(self, subscription_id: str, moment: datetime) -> None:
        """A provider that renews by itself (Stripe): void its renewals of a plan that lapsed at `moment`."""

    def refund_subscription(self, subscription_id: str) -> list[tuple[str, int, str]]:
        """Refund what a subscription started in a race beside the running plan was paid; each
        refund once. Returns (invoice, amount, currency) of each."""


class BillingProvider(PaymentProvider, Protocol):
    """A provider that owns billing (`owns_billing` True, Stripe: payments/stripe/provider.py): it also
    changes the subscription, reports its invoices and takes agentbilling's extras onto them."""

    def change_now(self, subscription_id: str, plan: Plan) -> ProviderSubscription | None:
        """Immediately: the price switched and the prorated difference invoiced at once."""

    def change_later(self, subscription_id: str, plan: Plan, at: datetime) -> ProviderSubscription | None:
        """End of the current period / On custom date: the new plan from `at`."""

    def cancel_change(self, subscription_id: str) -> ProviderSubscription | None: ...

    def invoice_facts(self, invoice_id: str, event_type: str,
                      event_created: int) -> InvoiceMirror | DraftRenewal | None: ...

    def add_overage(self, draft: DraftRenewal, amount: int, description: str, key: str) -> None:
        """The extras of the period that ended on its renewal invoice while a draft, once per `key`."""

    def pending_item(self, customer: str, subscription_id: str, amount: int, currency: str, description: str,
                     key: str) -> str:
        """A charge that the subscription's next invoice takes along, once per `key`; its id."""

    def delete_item(self, item_id: str) -> None: ...

    def final_invoice(self, customer: str, subscription_id: str, currency: str, lines: list[tuple[int, str]],
                      key: str) -> None:
        """The invoice of an ended subscription's last extras, made once per `key` and charged."""


def owns_billing(provider: PaymentProvider) -> TypeGuard[BillingProvider]:
    """A provider that owns billing (`owns_billing`) is a BillingProvider: the one flag tells them apart."""
    return provider.owns_billing


def billing_provider(provider: PaymentProvider) -> BillingProvider:
    """`provider` as one that owns billing, for the paths of its billing (usecases' `ProviderBills`,
    chosen from the same flag); TypeError for one that does not."""
    if not owns_billing(provider):
        raise TypeError(f"the provider {provider.name!r} does not own billing")
    return provider
