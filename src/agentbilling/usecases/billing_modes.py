"""Who renews, invoices and charges a paid plan: agentbilling (`WeBill`, the sandbox) or the provider
(`ProviderBills`, Stripe); chosen once, from the provider's `owns_billing`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, false
from sqlalchemy.sql import ColumnElement

from agentbilling.domain.plan_change import When
from agentbilling.domain.plans import Plan
from agentbilling.domain.subscription import Status, Subscription, at
from agentbilling.payments.provider import Notification, PaymentProvider, billing_provider
from agentbilling.storage.tables import subscriptions
from agentbilling.usecases import due, invoices, plan_change, renewals
from agentbilling.usecases.paid_plans import PaidPlans
from agentbilling.usecases.provider_commands import command
from agentbilling.usecases.subscriptions import save, stored


class WeBill:
    """agentbilling renews each period, invoices it and says when to charge; the provider (the
    sandbox) carries the charges out."""

    def bills(self, row: Mapping[str, Any]) -> bool:
        """agentbilling invoices this plan itself: a running plan through the provider, not an offline deal."""
        return (row["provider"] is not None and not row["offline"]
                and row["status"] == Status.ACTIVE.value and row["anchor_at"] is not None)

    def catch_up(self, billing: PaidPlans, conn: Any, row: Mapping[str, Any],
                 now: datetime) -> tuple[Subscription, dict[str, Any]]:
        if not self.bills(row):
            return at(stored(billing, row), now), {}
        return renewals.catch_up(billing, conn, row, now)

    def plan_ended(self, billing: PaidPlans, conn: Any, row: Mapping[str, Any], sub: Subscription,
                   now: datetime) -> None:
        """Its last period was closed by the step that ended it (renewals.final)."""

    def plan_replaced(self, billing: PaidPlans, conn: Any, row: Mapping[str, Any], sub: Subscription,
                      now: datetime) -> None:
        """An offline deal replaces the plan: its period is closed on a final invoice now."""
        tenant_id = row["tenant_id"]
        if self.bills(row) and sub.status is Status.ACTIVE:
            credits = billing.book.credits(conn, tenant_id)
            rest = renewals.final(billing, conn, row, sub, sub.period(now), now, credits)
            if rest != credits:
                billing.book.put_credits(conn, tenant_id, rest)
        command(conn, tenant_id, "expire_checkouts", row["provider_customer"], now)

    def change_plan(self, billing: PaidPlans, tenant_id: str, target: Plan, when: When, custom: date | None,
                    now: datetime) -> None:
        plan_change.change_here(billing, tenant_id, target, when, custom, now)

    def drop_change(self, billing: PaidPlans, conn: Any, sub: Subscription, row: Mapping[str, Any],
                    now: datetime) -> None:
        save(billing, conn, dataclasses.replace(sub, pending=None), now, row)

    def change_dropped(self, billing: PaidPlans, row: Mapping[str, Any], now: datetime) -> None:
        """Nothing to tell the provider."""

    def event_created(self, note: Notification) -> int:
        return 0

    def invoice_named(self, billing: PaidPlans, note: Notification, created: int) -> Any:
        assert note.invoice is not None
        return billing.provider.charge_state(note.invoice)

    def end_lapsed(self, billing: PaidPlans) -> None:
        """A plan that lapsed is not renewed here: nothing to end at the provider."""

    def renewals_due(self, now: datetime) -> ColumnElement[bool]:
        c = subscriptions.c
        return and_(c.billed_until <= now, c.offline.is_(False), c.provider.is_not(None))

    def collect(self, billing: PaidPlans, now: datetime) -> int:
        return invoices.collect(billing, now)


class ProviderBills:
    """The provider renews, invoices, charges and retries (Stripe); agentbilling mirrors it and
    closes its segments, their extras added to the provider's invoices."""

    def catch_up(self, billing: PaidPlans, conn: Any, row: Mapping[str, Any],
                 now: datetime) -> tuple[Subscription, dict[str, Any]]:
        return renewals.catch_up_at_provider(billing, conn, row, now)

    def plan_ended(self, billing: PaidPlans, conn: Any, row: Mapping[str, Any], sub: Subscription,
                   now: datetime) -> None:
        """A running plan stored as ended: its last period closed, extras invoiced at the provider."""
        if (row["status"] == Status.ACTIVE.value and sub.status is not Status.ACTIVE
                and row["provider_subscription"] and not row["offline"] and sub.anchor and sub.plan):
            renewals.final_at_provider(billing, conn, row, sub, now)

    def plan_replaced(self, billing: PaidPlans, conn: Any, row: Mapping[str, Any], sub: Subscription,
                      now: datetime) -> None:
        """An offline deal replaces the plan: it is ended at the provider."""
        command(conn, row["tenant_id"], "expire_checkouts", row["provider_customer"], now)
        if row["provider_subscription"]:
            command(conn, row["tenant_id"], "end", row["provider_subscription"], now)

    def change_plan(self, billing: PaidPlans, tenant_id: str, target: Plan, when: When, custom: date | None,
                    now: datetime) -> None:
        plan_change.change_at_provider(billing, tenant_id, target, when, custom, now)

    def drop_change(self, billing: PaidPlans, conn: Any, sub: Subscription, row: Mapping[str, Any],
                    now: datetime) -> None:
        """The provider drops it (`change_dropped`), after this transaction."""

    def change_dropped(self, billing: PaidPlans, row: Mapping[str, Any], now: datetime) -> None:
        plan_change.drop_change_at_provider(billing, row, now)

    def event_created(self, note: Notification) -> int:
        return int((note.raw or {}).get("created") or 0)

    def invoice_named(self, billing: PaidPlans, note: Notification, created: int) -> Any:
        assert note.invoice is not None
        return billing_provider(billing.provider).invoice_facts(note.invoice, note.type, created)

    def end_lapsed(self, billing: PaidPlans) -> None:
        due.end_lapsed_at_provider(billing)

    def renewals_due(self, now: datetime) -> ColumnElement[bool]:
        return false()  # the provider renews

    def collect(self, billing: PaidPlans, now: datetime) -> int:
        return 0  # the provider charges and retries its own invoices


BillingMode = WeBill | ProviderBills


def mode_of(provider: PaymentProvider) -> BillingMode:
    return ProviderBills() if provider.owns_billing else WeBill()
