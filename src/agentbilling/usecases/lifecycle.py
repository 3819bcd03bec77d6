"""A paid subscription's life, one story per module; `Lifecycle` names them. Every write holds the
subscription's row lock and stores what time did to it first (subscriptions.load_for_write)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from agentbilling.domain.money import Money
from agentbilling.domain.plans import Catalog, Terms
from agentbilling.payments.provider import Checkout, PaymentProvider
from agentbilling.storage.db import Database
from agentbilling.storage.repositories.ledger import Book
from agentbilling.usecases import (
    demo_requests,
    due,
    invoices,
    plan_change,
    provider_commands,
    provider_events,
    subscribe,
)
from agentbilling.usecases.billing_modes import mode_of
from agentbilling.usecases.paid_plans import PaidPlans
from agentbilling.usecases.results import DemoRequest, Invoice


class Lifecycle:
    def __init__(self, db: Database, catalog: Catalog, provider: PaymentProvider, *, grace: timedelta) -> None:
        self.billing = PaidPlans(db=db, catalog=catalog, provider=provider, mode=mode_of(provider), grace=grace,
                               book=Book(catalog))

    @property
    def provider(self) -> PaymentProvider:
        return self.billing.provider

    @property
    def book(self) -> Book:
        return self.billing.book

    # -- subscribe ------------------------------------------------------------------------------

    def checkout(self, tenant_id: str, plan_id: object, now: datetime, base_url: str) -> Checkout:
        return subscribe.checkout(self.billing, tenant_id, plan_id, now, base_url)

    def portal_url(self, tenant_id: str, now: datetime, base_url: str) -> str:
        return subscribe.portal_url(self.billing, tenant_id, now, base_url)

    def put_on_plan(self, tenant_id: str, plan_id: str, terms: Terms | None, now: datetime) -> None:
        subscribe.put_on_plan(self.billing, tenant_id, plan_id, terms, now)

    # -- plan changes (R8) ---------------------------------------------------------------------

    def change_plan(self, tenant_id: str, plan_id: object, when: object, on: object, now: datetime) -> None:
        plan_change.change_plan(self.billing, tenant_id, plan_id, when, on, now)

    def cancel_change(self, tenant_id: str, now: datetime) -> None:
        plan_change.cancel_change(self.billing, tenant_id, now)

    # -- invoices ------------------------------------------------------------------------------

    def invoices(self, tenant_id: str, cursor: str | None, limit: int) -> tuple[list[Invoice], str | None]:
        return invoices.list_invoices(self.billing, tenant_id, cursor, limit)

    def invoice(self, tenant_id: str, invoice_id: str) -> Invoice:
        return invoices.read_invoice(self.billing, tenant_id, invoice_id)

    def balances(self, tenant_id: str) -> tuple[list[Money], dict[str, int]]:
        return invoices.balances(self.billing, tenant_id)

    def collect(self, now: datetime) -> int:
        return self.billing.mode.collect(self.billing, now)

    # -- Book a demo ---------------------------------------------------------------------------

    def request_demo(self, tenant_id: str, plan_id: object, user_id: str | None, message: object,
                     now: datetime) -> DemoRequest:
        return demo_requests.request_demo(self.billing, tenant_id, plan_id, user_id, message, now)

    def demo_requests(self, cursor: str | None, limit: int) -> tuple[list[DemoRequest], str | None]:
        return demo_requests.list_demo_requests(self.billing, cursor, limit)

    # -- the provider: its webhooks, and what it must still be told ----------------------------

    def receive(self, body: bytes, headers: Mapping[str, str], clock: Callable[[], datetime]) -> str:
        return provider_events.receive(self.billing, body, headers, clock)

    def run_commands(self, now: datetime) -> int:
        return provider_commands.run_commands(self.billing, now)

    # -- what comes due as time passes ---------------------------------------------------------

    def run_due(self, now: datetime) -> int:
        return due.run_due(self.billing, now)

    def due_count(self, now: datetime) -> int:
        return due.due_count(self.billing, now)

    def next_due(self, after: datetime) -> datetime | None:
        return due.next_due(self.billing, after)
