"""A paid subscription's life: checkout, plan changes, renewal invoices and their charges, the
provider's webhooks, cancellation, and the work that comes due as time passes.

Every write reads the subscription row locked (FOR UPDATE on PostgreSQL; SQLite's writer holds the
database), takes it to `now` (`subscription.at`) and writes it back whole, so what time did to it
is stored by whichever write comes first. Webhooks are stored before they are applied, unique by
provider and event id, in the transaction that applies them: each is applied once. Invoices have
ids derived from the period they renew, so a renewal is made once however many workers run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, false, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from agentbilling.domain import ledger
from agentbilling.domain.errors import BalanceDue, Conflict, CurrencyChange, InvalidInput, NotFound, PaymentFailed
from agentbilling.domain.invoicing import InvoiceDraft, InvoiceLine
from agentbilling.domain.ledger import Step
from agentbilling.domain.money import Money
from agentbilling.domain.limits import kept_limit
from agentbilling.domain.periods import Period, add_months, period_at
from agentbilling.domain.plan_change import PlanChange, When, check_target, effective_at
from agentbilling.domain.notices import event_notices
from agentbilling.domain.plans import Catalog, Plan, Terms
from agentbilling.domain.subscription import (
    TRIAL_COUNTER,
    Status,
    Subscription,
    at,
    next_retry,
    start_plan,
    with_change_applied,
    with_payment_failed,
)
from agentbilling.usecases import notices
from agentbilling.usecases.cursors import newest_first
from agentbilling.storage.repositories.ledger import Book, amounts_text
from agentbilling.delivery.webhooks_out import emit, subscription_data
from agentbilling.usecases.results import DemoRequest, Invoice
from agentbilling.payments.provider import (
    Checkout,
    ChargeState,
    DraftRenewal,
    InvoiceMirror,
    Notification,
    PaymentProvider,
    ProviderSubscription,
)
from agentbilling.storage.db import Database
from agentbilling.storage.leases import tenant_lease
from agentbilling.storage.rows import subscription_from_row, SUBSCRIPTION_COLUMNS, terms_to_json
from agentbilling.storage.tables import (
    demo_requests,
    invoices,
    provider_commands,
    provider_events,
    subscriptions,
    tenants,
)

log = logging.getLogger(__name__)

# A charge handed to the provider is not handed again before this, unless its webhook says so.
LEASE = timedelta(minutes=10)
US = timedelta(microseconds=1)
STARTS = ("checkout.completed", "checkout.session.completed", "customer.subscription.created")


def _invoice(row: Mapping[str, Any]) -> Invoice:
    lines = [InvoiceLine(x["description"], x["quantity"], x["unit_amount"], x["amount"]) for x in row["lines"]]
    return Invoice(row["id"], row["kind"], row["status"], row["currency"], row["total"], lines, row["period_start"],
                   row["period_end"], row["created_at"], row["paid_at"], row["attempts"])


def _lines_json(draft: InvoiceDraft) -> list[dict[str, Any]]:
    return [dataclasses.asdict(line) for line in draft.lines]


class Lifecycle:
    def __init__(self, db: Database, catalog: Catalog, provider: PaymentProvider, *, grace: timedelta) -> None:
        self.db = db
        self.catalog = catalog
        self.provider = provider
        self.grace = grace
        self.book = Book(catalog)
        self._tenant_locks: dict[str, threading.Lock] = {}  # SQLite: one delivery per tenant at a time
        self._locks_guard = threading.Lock()

    # -- the subscription row -----------------------------------------------------------------

    def _load(self, conn: Any, tenant_id: str, now: datetime) -> tuple[Subscription, Mapping[str, Any]]:
        row = self._row(conn, tenant_id)
        return at(self._stored(row), now), row

    def _row(self, conn: Any, tenant_id: str) -> Mapping[str, Any]:
        row = conn.execute(select(subscriptions).where(subscriptions.c.tenant_id == tenant_id)
                           .with_for_update()).mappings().first()
        if row is None:
            raise NotFound(f"No tenant {tenant_id!r}.")
        return row

    def _load_for_write(self, conn: Any, tenant_id: str, now: datetime) -> tuple[Subscription, Mapping[str, Any]]:
        """`_load` in a write: what time did to the plan is stored first, step by step with its
        invoices (`_catch_up`), so that whatever this write changes next starts from it."""
        sub, row = self._load(conn, tenant_id, now)
        caught, extra = self._catch_up(conn, row, now)
        if self._save(conn, caught, now, row, **extra):
            row = self._row(conn, tenant_id)
            sub = at(self._stored(row), now)
        return sub, row

    def _bills(self, row: Mapping[str, Any]) -> bool:
        """agentbilling invoices this plan itself: a running plan through a provider that leaves
        billing to us (the sandbox), not an offline deal."""
        return (not self.provider.owns_billing and row["provider"] is not None and not row["offline"]
                and row["status"] == Status.ACTIVE.value and row["anchor_at"] is not None)

    def _catch_up(self, conn: Any, row: Mapping[str, Any], now: datetime) -> tuple[Subscription, dict[str, Any]]:
        """The plan taken to `now` one step at a time (domain/ledger.next_step): its end with the
        final invoice, a scheduled change splitting its period, each renewal closing the period
        before. Every step is written in this transaction, under the subscription's row lock, and
        moves the stored state past it: a period is closed once however many writers run."""
        stored = self._stored(row)
        if not self._bills(row):
            if (self.provider.owns_billing and stored.status is Status.ACTIVE and stored.pending is not None
                    and stored.pending.effective_at <= now and row["provider_subscription"] and not row["offline"]):
                self._split_at_provider(conn, row, stored, stored.pending.plan, now)  # its phase came (R8a)
            return at(stored, now), {}
        tenant_id, sub, billed = row["tenant_id"], stored, row["billed_until"]
        if ledger.next_step(sub, billed, now) is None:
            return at(stored, now), {}  # up to date: nothing read, nothing written
        credits = before = self.book.credits(conn, tenant_id)
        while (step := ledger.next_step(sub, billed, now)) is not None:
            moment, kind = step
            assert sub.anchor is not None and sub.plan is not None
            if kind is Step.END:
                credits = self._final(conn, row, sub, period_at(sub.anchor, moment - US), moment, credits)
                sub = at(dataclasses.replace(sub, pending=None), moment)
            elif kind is Step.CHANGE:
                credits = self._scheduled_change(conn, row, sub, moment, credits)
                sub = with_change_applied(sub)
            else:
                credits = self._renew(conn, row, sub, moment, credits)
                billed = period_at(sub.anchor, moment).end
        if credits != before:
            self.book.put_credits(conn, tenant_id, credits)
        return at(sub, now), {"billed_until": billed}

    def _renew(self, conn: Any, row: Mapping[str, Any], sub: Subscription, boundary: datetime,
               credits: dict[str, int]) -> dict[str, int]:
        """The renewal at `boundary`: the new period's fee, the extras of the period that ended (its
        segments closed on it), credit in its currency; the new period's first segment."""
        assert sub.anchor is not None and sub.plan is not None
        tenant_id, ps = row["tenant_id"], row["provider_subscription"]
        ended, new = period_at(sub.anchor, boundary - US), period_at(sub.anchor, boundary)
        closing = ledger.closing(self.book.segments(conn, tenant_id, ended, sub.plan),
                                 self.book.counter(conn, tenant_id, ended))
        draft, rest = ledger.renewal(sub.plan, new, closing, credits)
        invoice_id = f"rn_{ps[-12:]}_{new.start:%Y%m%d%H%M%S}"
        if not self._add_invoice(conn, tenant_id, invoice_id, "renewal", draft, ended.start, new.end, boundary, ps,
                                 to_charge=True):
            return credits
        for seg in closing:
            self.book.put(conn, tenant_id, seg.closed(invoice_id))
        self.book.put(conn, tenant_id, ledger.opened(new, sub.plan, boundary, 0))
        return rest

    def _final(self, conn: Any, row: Mapping[str, Any], sub: Subscription, period: Period, moment: datetime,
               credits: dict[str, int]) -> dict[str, int]:
        """A period that ends with no renewal (the plan was cancelled, ended unpaid or replaced):
        its open segments are closed on a final invoice of their extras (none if within the
        allowance). What was owed before stays owed."""
        assert sub.plan is not None
        tenant_id, ps = row["tenant_id"], row["provider_subscription"]
        closing = ledger.closing(self.book.segments(conn, tenant_id, period, sub.plan),
                                 self.book.counter(conn, tenant_id, period))
        made = ledger.final(closing, credits)
        invoice_id = f"fi_{ps[-12:]}_{period.start:%Y%m%d%H%M%S}"
        if made is not None:
            draft, credits = made
            self._add_invoice(conn, tenant_id, invoice_id, "final", draft, period.start, period.end, moment, ps,
                              to_charge=True)
        for seg in closing:
            self.book.put(conn, tenant_id, seg.closed(invoice_id if made is not None else ledger.NOTHING_BEYOND))
        return credits

    def _final_at_provider(self, conn: Any, row: Mapping[str, Any], sub: Subscription, now: datetime) -> None:
        """A plan the provider bills ended (Stripe): its last period's segments are closed, and their
        extras invoiced by a provider command carried out after the commit (R8a)."""
        assert sub.anchor is not None and sub.plan is not None
        tenant_id, ps = row["tenant_id"], row["provider_subscription"]
        period = period_at(sub.anchor, (sub.ended_at or now) - US)
        closing = ledger.closing(self.book.segments(conn, tenant_id, period, sub.plan),
                                 self.book.counter(conn, tenant_id, period))
        marker = f"final:{ps}"
        for seg in closing:
            self.book.close(conn, tenant_id, seg, marker)
        if any(ledger.extras_line(seg) for seg in closing):
            self._command(conn, tenant_id, "final_invoice", ps, now)

    def _refund_at_provider(self, tenant_id: str, subscription_id: str, now: datetime) -> None:
        """Refund a subscription started in a race, each refund recorded as a credit note."""
        for invoice_id, amount, currency in self.provider.refund_subscription(subscription_id):
            line = InvoiceLine(f"Refund of {invoice_id}: a second subscription started while a plan ran", 1,
                               -amount, -amount)
            with self.db.write() as conn:
                self._add_invoice(conn, tenant_id, f"cn_{invoice_id[-40:]}", "credit_note",
                                  InvoiceDraft(currency, (line,)), now, now, now, subscription_id, to_charge=False)

    def _invoice_final_at_provider(self, tenant_id: str, subscription_id: str) -> None:
        with self.db.read() as conn:
            customer = conn.execute(select(subscriptions.c.provider_customer)
                                    .where(subscriptions.c.tenant_id == tenant_id)).scalar()
            closed = self.book.closed_by(conn, tenant_id, f"final:{subscription_id}")
        lines = []
        for seg in closed:
            line = ledger.extras_line(seg)
            if line is not None and seg.plan.overage_price is not None:
                lines.append((line.amount, line.description, seg.plan.overage_price.currency))
        if lines and customer:
            self.provider.final_invoice(customer, subscription_id, lines[0][2], [(a, d) for a, d, _ in lines],
                                        f"final-{subscription_id}")

    def _split_by_change(self, conn: Any, tenant_id: str, period: Period, old: Plan, new: Plan, moment: datetime,
                         counter: int, closed_by: str) -> None:
        """`_split` for an immediate change the provider made (Stripe), whose extras went on its
        invoice as counted at the request (`counter`). The provider's webhook may have split the
        segments already (at the same moment, with the counter as it read it): then that split is
        set to this counter and the old segment closed, so its extras are billed once."""
        segs = self.book.segments(conn, tenant_id, period, old)
        running = self.book.running(conn, tenant_id, period, old)
        before = next((s for s in reversed(segs) if s.end == moment and s.plan.id == old.id), None)
        if running.plan.id == new.id and running.start == moment and before is not None:
            if before.closed_by is None:
                self.book.put(conn, tenant_id, dataclasses.replace(
                    before, units=max(0, counter - before.units_at_start), closed_by=closed_by))
                self.book.put(conn, tenant_id, dataclasses.replace(running, units_at_start=counter))
            return
        self._split(conn, tenant_id, period, old, new, moment, counter, closed_by)

    def _split(self, conn: Any, tenant_id: str, period: Period, old: Plan, new: Plan, moment: datetime, counter: int,
               closed_by: str | None) -> None:
        """The period's running segment ends at `moment` (closed by `closed_by`, if given) and the
        new plan's begins. A segment begun at that same moment has no length: the new plan takes
        it over, with the units recognised in it."""
        running = self.book.running(conn, tenant_id, period, old)
        if running.start == moment:
            self.book.put(conn, tenant_id, ledger.opened(period, new, moment, running.units_at_start))
            return
        ended = running.ended(moment, counter)
        self.book.put(conn, tenant_id, ended.closed(closed_by) if closed_by else ended)
        self.book.put(conn, tenant_id, ledger.opened(period, new, moment, counter))

    def _scheduled_change(self, conn: Any, row: Mapping[str, Any], sub: Subscription, moment: datetime,
                          credits: dict[str, int]) -> dict[str, int]:
        """A scheduled change in force at `moment`. At a period's start the renewal prices the new
        plan; mid-period it splits the period's segments there and bills the fee difference for
        the rest of it, as an immediate change does (its invoice's id is the change's moment)."""
        assert sub.anchor is not None and sub.plan is not None and sub.pending is not None
        tenant_id, ps, new = row["tenant_id"], row["provider_subscription"], sub.pending.plan
        period = period_at(sub.anchor, moment)
        if moment == period.start:
            return credits
        self._split(conn, tenant_id, period, sub.plan, new, moment, self.book.counter(conn, tenant_id, period), None)
        if sub.plan.price is None or new.price is None or sub.plan.price.currency != new.price.currency:
            return credits
        fee = ledger.change_fee(sub.plan, new, period, moment)
        if not fee:
            return credits
        line = InvoiceLine(f"{sub.plan.name} to {new.name}, prorated for the rest of the period", 1, fee, fee)
        if fee > 0:
            draft, credits = ledger.with_credit([line], new.price.currency, credits)
        else:
            draft, credits = InvoiceDraft(new.price.currency, (line,)), ledger.add_credit(
                credits, Money(-fee, new.price.currency))
        self._add_invoice(conn, tenant_id, f"pc_{ps[-12:]}_{moment:%Y%m%d%H%M%S}", "proration", draft, period.start,
                          period.end, moment, ps, to_charge=draft.total.amount > 0)
        return credits

    def _stored(self, row: Mapping[str, Any]) -> Subscription:
        return subscription_from_row(row["tenant_id"], [row[c] for c in SUBSCRIPTION_COLUMNS], self.catalog,
                                     lambda v: v)

    def _save(self, conn: Any, sub: Subscription, now: datetime, row: Mapping[str, Any], **extra: Any) -> bool:
        """Write `sub` over the stored `row`; nothing when nothing changed (so that the gate's kept
        standing, checked against the row's revision, stays valid): whether it wrote. A plan that
        changed is remembered with the moment it changed."""
        values: dict[str, Any] = {
            "status": sub.status.value, "plan_id": sub.plan.id if sub.plan else None, "anchor_at": sub.anchor,
            "custom_limit": sub.custom_limit, "pending_plan_id": sub.pending.plan.id if sub.pending else None,
            "pending_at": sub.pending.effective_at if sub.pending else None, "cancel_at": sub.cancel_at,
            "payment_failed_at": sub.payment_failed_at, "grace_ends_at": sub.grace_ends_at,
            "ended_at": sub.ended_at, "offline": sub.offline,
        }
        old_plan, new_plan = row["plan_id"], values["plan_id"]
        if old_plan and new_plan and old_plan != new_plan and "previous_plan_id" not in extra:
            came_due = row["pending_plan_id"] == new_plan and row["pending_at"] is not None and row["pending_at"] <= now
            changed_at = row["pending_at"] if came_due else now
            values.update(previous_plan_id=old_plan, plan_changed_at=changed_at)
        values.update(extra)
        if all(row[k] == v for k, v in values.items()):
            return False
        if (self.provider.owns_billing and row["status"] == Status.ACTIVE.value and sub.status is not Status.ACTIVE
                and row["provider_subscription"] and not row["offline"] and sub.anchor and sub.plan):
            self._final_at_provider(conn, row, sub, now)
        notices.record(conn, sub.tenant_id, event_notices(self._stored(row), sub, now), now)
        emit(conn, sub.tenant_id, "subscription.updated", {"subscription": subscription_data(sub)}, now)
        values["updated_at"] = now
        conn.execute(update(subscriptions).where(subscriptions.c.tenant_id == sub.tenant_id).values(**values))
        return True

    def balances(self, tenant_id: str) -> tuple[list[Money], dict[str, int]]:
        """What the tenant owes (open invoices, per currency) and the credit it holds (per currency)."""
        with self.db.read() as conn:
            return self.book.balances_due(conn, tenant_id), self.book.credits(conn, tenant_id)

    def _stop_retries(self, conn: Any, tenant_id: str) -> None:
        """The plan they were for was replaced: its open invoices stay owed (past due) but are no
        longer charged by themselves; a new card or a payment in the portal settles them."""
        c = invoices.c
        conn.execute(update(invoices).where(c.tenant_id == tenant_id, c.status == "open").values(next_attempt_at=None))

    def _offered(self, tenant_id: str, plan_id: object) -> Plan:
        if not isinstance(plan_id, str) or not plan_id:
            raise InvalidInput("plan_id must be the id of a plan.")
        plan = self.catalog.get(plan_id)
        if plan is None or not plan.available_for(tenant_id):
            raise NotFound(f"No plan {plan_id!r}.")
        return plan

    # -- subscribe ------------------------------------------------------------------------------

    def checkout(self, tenant_id: str, plan_id: object, now: datetime, base_url: str) -> Checkout:
        """Open a checkout for a plan in the secure billing portal. Completing it (the provider's
        webhook) starts the plan and ends the trial."""
        plan = self._offered(tenant_id, plan_id)
        if plan.enterprise or plan.price is None:
            raise InvalidInput(f"The {plan.name} plan is arranged with us: use Book a demo.")
        with self.db.read() as conn:
            sub, row = self._load(conn, tenant_id, now)
            email = conn.execute(select(tenants.c.billing_email).where(tenants.c.id == tenant_id)).scalar()
        if sub.paid and sub.status is Status.ACTIVE:
            raise Conflict("You already have a paid subscription: change your plan instead of subscribing again.")
        with self.db.read() as conn:
            owed = self.book.balances_due(conn, tenant_id)
        if owed:
            # R10: what the ended plan left unpaid is settled before a new one starts.
            raise BalanceDue(f"{amounts_text(owed)} is still owed for your earlier plan. Settle it in the billing portal "
                             "(Manage), then subscribe again.",
                             pay_url=self.provider.portal_url(tenant_id, base_url, customer=row["provider_customer"]),
                             balance_due=[{"amount": m.amount, "currency": m.currency} for m in owed])
        co = self.provider.create_checkout(tenant_id, plan, now, base_url, customer=row["provider_customer"],
                                           email=email)
        if co.customer and co.customer != row["provider_customer"]:
            with self.db.write() as conn:
                conn.execute(update(subscriptions).where(subscriptions.c.tenant_id == tenant_id)
                             .values(provider_customer=co.customer))
        return co

    def portal_url(self, tenant_id: str, now: datetime, base_url: str) -> str:
        with self.db.read() as conn:
            _, row = self._load(conn, tenant_id, now)
        return self.provider.portal_url(tenant_id, base_url, customer=row["provider_customer"])

    def put_on_plan(self, tenant_id: str, plan_id: str, terms: Terms | None, now: datetime) -> None:
        """An offline deal: monthly periods from now, renewed without the provider; ends a trial."""
        catalog_plan = self.catalog.get(plan_id)
        if catalog_plan is None:
            raise NotFound(f"No plan {plan_id!r}.")
        plan = catalog_plan.with_terms(terms)
        base, top = plan.base_session_limit, plan.max_session_limit
        if any(v is not None and v <= 0 for v in (base, top)):
            raise InvalidInput("Session limits must be greater than zero.")
        if base is not None and top is not None and base > top:
            raise InvalidInput("The base session limit cannot be above the highest session limit.")
        with self.db.write() as conn:
            sub, row = self._load_for_write(conn, tenant_id, now)
            started = start_plan(sub, plan, now, used=self.book.counter(conn, tenant_id, TRIAL_COUNTER), offline=True)
            # The plan the provider ran is over: what it left unpaid stays owed but is not retried,
            # its period is closed on a final invoice, and no checkout left open can start another.
            self._stop_retries(conn, tenant_id)
            if self._bills(row) and sub.status is Status.ACTIVE:
                credits = self.book.credits(conn, tenant_id)
                rest = self._final(conn, row, sub, sub.period(now), now, credits)
                if rest != credits:
                    self.book.put_credits(conn, tenant_id, rest)
            self._command(conn, tenant_id, "expire_checkouts", row["provider_customer"], now)
            if self.provider.owns_billing and row["provider_subscription"]:
                self._command(conn, tenant_id, "end", row["provider_subscription"], now)
            self._save(conn, started, now, row, terms=terms_to_json(terms), provider=None, provider_customer=None,
                       provider_subscription=None, billed_until=None, previous_plan_id=None,
                       plan_changed_at=None)
        self.run_commands(now)

    # -- plan changes (R8) ---------------------------------------------------------------------

    def change_plan(self, tenant_id: str, plan_id: object, when: object, on: object, now: datetime) -> None:
        target = self._offered(tenant_id, plan_id)
        try:
            when_ = When(when)
        except ValueError:
            raise InvalidInput("when must be one of 'immediately', 'end_of_period', 'custom_date'.") from None
        custom = _date(on) if when_ is When.CUSTOM_DATE else None
        if when_ is not When.CUSTOM_DATE and on is not None:
            raise InvalidInput("A date goes only with when = 'custom_date'.")
        to_pay: tuple[str, int, str] | None = None
        split: tuple[Period, Plan, int, list[InvoiceLine]] | None = None
        with self.db.write() as conn:
            sub, row = self._load_for_write(conn, tenant_id, now)
            if not sub.paid or sub.status is not Status.ACTIVE or sub.offline or row["provider"] is None:
                raise Conflict("Plan changes need a paid subscription through the billing portal: subscribe first.")
            assert sub.plan is not None
            if sub.cancel_at is not None:
                raise Conflict("Your subscription is cancelled: resume it in the billing portal before changing plan.")
            check_target(tenant_id, sub.plan, target)
            period = sub.period(now)
            if target.price is None or sub.plan.price is None or target.price.currency != sub.plan.price.currency:
                # R8a: credit and extras are kept per currency; a plan in another one is a new subscription.
                raise CurrencyChange(f"The {target.name} plan is billed in another currency than yours: cancel this "
                                     "plan and subscribe to it when this one ends.")
            moment = effective_at(when_, now=now, period=period, custom=custom)
            if self.provider.owns_billing:
                # The provider changes it (below, outside this transaction); its answer is stored.
                # An immediate change closes the running segment: its extras go on the change's invoice.
                if when_ is When.IMMEDIATELY:
                    counter = self.book.counter(conn, tenant_id, period)
                    running = self.book.running(conn, tenant_id, period, sub.plan)
                    lines = ledger.extras_lines([running.ended(now, counter)], target.price.currency) \
                        if now > running.start else []
                    split = (period, sub.plan, counter, lines)
            elif when_ is When.IMMEDIATELY:
                to_pay = self._change_now(conn, row, sub, target, now)
            else:
                self._save(conn, dataclasses.replace(sub, pending=PlanChange(target, moment)), now, row)
        if self.provider.owns_billing:
            sub_id = row["provider_subscription"]
            items = self._extras_before_change(split, row) if split is not None else []
            try:
                facts = (self.provider.change_now(sub_id, target) if when_ is When.IMMEDIATELY
                         else self.provider.change_later(sub_id, target, moment))
            except PaymentFailed:  # as the provider has it now (unchanged), whatever its webhooks say first
                for item in items:
                    self.provider.delete_item(item)
                self._apply_subscription_facts(self.provider.subscription(sub_id), now)
                raise
            if split is not None:
                with self.db.write() as conn:
                    self._row(conn, tenant_id)
                    period, old, counter, _ = split
                    self._split_by_change(conn, tenant_id, period, old, target, now, counter,
                                          items[0] if items else ledger.NOTHING_BEYOND)
            self._apply_subscription_facts(facts, now)
        if to_pay is not None:
            self._pay_change(tenant_id, *to_pay, now)

    def _extras_before_change(self, split: tuple[Period, Plan, int, list[InvoiceLine]],
                              row: Mapping[str, Any]) -> list[str]:
        """The running segment's extras as items the provider's change invoice takes along (Stripe)."""
        period, old, counter, lines = split
        assert old.price is not None
        return [self.provider.pending_item(row["provider_customer"], row["provider_subscription"], line.amount,
                                           old.price.currency, line.description,
                                           f"extras-{row['provider_subscription']}-{period.start:%Y%m%d%H%M%S}-{counter}")
                for line in lines]

    def _change_now(self, conn: Any, row: Mapping[str, Any], sub: Subscription, target: Plan,
                    now: datetime) -> tuple[str, int, str] | None:
        """An immediate change (R8, R8a): the running segment is closed on the change's invoice
        (the fee difference for the rest of the period and its extras). One that costs nothing
        (a credit note, or nothing) is made at once; one that costs money waits for its payment:
        its invoice carries the change, and paying it makes it (`_sync_invoice`). Returns what to
        charge, if anything."""
        assert sub.plan is not None
        tenant_id, ps = row["tenant_id"], row["provider_subscription"]
        period = sub.period(now)
        c = invoices.c
        # An earlier upgrade still unpaid (a request that died before its charge) is dropped.
        conn.execute(update(invoices).where(c.tenant_id == tenant_id, c.status == "open", c.change_plan_id.is_not(None))
                     .values(status="void", next_attempt_at=None))
        counter = self.book.counter(conn, tenant_id, period)
        credits = self.book.credits(conn, tenant_id)
        draft, _, rest = ledger.change(self.book.running(conn, tenant_id, period, sub.plan), target, now, counter,
                                       credits)
        invoice_id = "pr_" + secrets.token_hex(10)
        total = draft.total.amount
        if total > 0:
            self._add_invoice(conn, tenant_id, invoice_id, "proration", draft, period.start, period.end, now, ps,
                              to_charge=True, next_attempt_at=None, change_plan_id=target.id, change_at=now,
                              change_counter=counter)
            return invoice_id, total, draft.currency
        if draft.lines:
            self._add_invoice(conn, tenant_id, invoice_id, "proration", draft, period.start, period.end, now, ps,
                              to_charge=False)
        if total < 0:
            rest = ledger.add_credit(rest, Money(-total, draft.currency))
        self._make_change(conn, row, sub, target, now, counter, invoice_id, rest)
        return None

    def _make_change(self, conn: Any, row: Mapping[str, Any], sub: Subscription, target: Plan, moment: datetime,
                     counter: int, invoice_id: str, credits: dict[str, int]) -> None:
        """The change in force from `moment`: the running segment ends there, closed by
        `invoice_id`, and the new plan's begins; limits recalculated (R8)."""
        tenant_id = row["tenant_id"]
        period = sub.period(moment)
        assert sub.plan is not None
        self._split(conn, tenant_id, period, sub.plan, target, moment, counter, invoice_id)
        self.book.put_credits(conn, tenant_id, credits)
        changed = dataclasses.replace(sub, plan=target, pending=None, custom_limit=kept_limit(sub.custom_limit, target))
        self._save(conn, changed, moment, row, terms=None)

    def _pay_change(self, tenant_id: str, invoice_id: str, total: int, currency: str, now: datetime) -> None:
        """Charge an upgrade's invoice now; the change is made once it is paid, else nothing
        changes and the invoice is voided (PaymentFailed, a 402)."""
        self.provider.charge(tenant_id, invoice_id, total, currency, f"{invoice_id}-1", now)
        state = self.provider.charge_state(invoice_id)
        with self.db.write() as conn:  # as its webhook does; a no-op if that came first
            if state is not None and state.paid_at is not None:
                self._sync_invoice(conn, tenant_id, invoice_id, state.paid_at, None, 0, now)
            else:
                self._sync_invoice(conn, tenant_id, invoice_id, None, now, 1, now)
            status = conn.execute(select(invoices.c.status).where(invoices.c.tenant_id == tenant_id,
                                                                  invoices.c.id == invoice_id)).scalar()
        self.run_commands(now)
        if status != "paid":
            raise PaymentFailed("The payment for the new plan failed, so your plan was not changed. Update your "
                                "payment method (Manage) and try again.")

    def _apply_subscription_facts(self, facts: ProviderSubscription | None, now: datetime) -> None:
        if facts is not None:
            with self.db.write() as conn:
                self._sync_subscription(conn, facts, now)

    def cancel_change(self, tenant_id: str, now: datetime) -> None:
        with self.db.write() as conn:
            sub, row = self._load_for_write(conn, tenant_id, now)
            if sub.pending is None:
                raise Conflict("There is no scheduled plan change to cancel.")
            if not self.provider.owns_billing:
                self._save(conn, dataclasses.replace(sub, pending=None), now, row)
        if self.provider.owns_billing:
            self._apply_subscription_facts(self.provider.cancel_change(row["provider_subscription"]), now)

    # -- invoices ------------------------------------------------------------------------------

    def _add_invoice(self, conn: Any, tenant_id: str, invoice_id: str, kind: str, draft: InvoiceDraft,
                     start: datetime, end: datetime, now: datetime, provider_subscription: str | None, *,
                     to_charge: bool, paid_at: datetime | None = None, **columns: Any) -> bool:
        """Record an invoice; False if it exists already (the same renewal made by another worker)."""
        total = draft.total.amount
        open_ = to_charge and total > 0
        values = {"next_attempt_at": now if open_ else None, **columns}
        try:
            with conn.begin_nested():
                conn.execute(insert(invoices).values(
                    tenant_id=tenant_id, id=invoice_id, provider_subscription=provider_subscription, kind=kind,
                    status="open" if open_ else "paid", currency=draft.currency, total=total,
                    lines=_lines_json(draft), period_start=start, period_end=end, created_at=now,
                    paid_at=None if open_ else (paid_at or now), **values,
                ))
        except IntegrityError:
            return False
        return True

    def invoices(self, tenant_id: str, cursor: str | None, limit: int) -> tuple[list[Invoice], str | None]:
        return newest_first(self.db, select(invoices).where(invoices.c.tenant_id == tenant_id), invoices.c.created_at,
                            invoices.c.id, cursor, limit, lambda r: _invoice(r._mapping),
                            lambda i: (i.created_at, i.id))

    def invoice(self, tenant_id: str, invoice_id: str) -> Invoice:
        with self.db.read() as conn:
            row = conn.execute(select(invoices).where(invoices.c.tenant_id == tenant_id, invoices.c.id == invoice_id)) \
                .mappings().first()
        if row is None:
            raise NotFound(f"No invoice {invoice_id!r}.")
        return _invoice(row)

    # -- Book a demo ---------------------------------------------------------------------------

    def request_demo(self, tenant_id: str, plan_id: object, user_id: str | None, message: object,
                     now: datetime) -> DemoRequest:
        plan = self._offered(tenant_id, plan_id)
        if not plan.enterprise:
            raise InvalidInput(f"Book a demo is for Enterprise plans; subscribe to {plan.name} instead.")
        if message is not None and (not isinstance(message, str) or len(message) > 2000):
            raise InvalidInput("message must be text of at most 2,000 characters.")
        req = DemoRequest("demo_" + secrets.token_hex(10), tenant_id, plan.id, user_id, message or None, now)
        with self.db.write() as conn:
            conn.execute(insert(demo_requests).values(dataclasses.asdict(req)))
        return req

    def demo_requests(self, cursor: str | None, limit: int) -> tuple[list[DemoRequest], str | None]:
        return newest_first(self.db, select(demo_requests), demo_requests.c.created_at, demo_requests.c.id, cursor,
                            limit, lambda r: DemoRequest(**r._mapping), lambda d: (d.created_at, d.id))

    # -- the provider's webhooks ---------------------------------------------------------------

    def receive(self, body: bytes, headers: Mapping[str, str], clock: Callable[[], datetime]) -> str:
        """A provider delivery: verified (WebhookRejected if not the provider's), stored, applied once:
        "applied"; "duplicate" for an event received before; "ignored" for one about no tenant here.

        A notification names an object; what is applied is that object as the provider has it now,
        read again once this delivery holds the tenant (its row lock on PostgreSQL; on SQLite a lock
        per tenant in this process, so that the database's one writer never waits for a provider),
        so that of two deliveries at once the one applied last also read last: any order of
        delivery ends in the provider's latest state. The time is read again then too.
        """
        now = clock()
        note = self.provider.verify(body, headers)
        with self.db.read() as conn:
            seen = conn.execute(select(provider_events.c.event_id).where(
                provider_events.c.provider == self.provider.name, provider_events.c.event_id == note.id)).first()
        if seen:
            return "duplicate"
        created = int((note.raw or {}).get("created") or 0) if self.provider.owns_billing else 0
        facts = self._facts(note, created)
        if isinstance(facts, DraftRenewal):
            self._add_overage(facts, now)  # before the provider finalizes it; once, by its idempotency key
        tenant_id = note.tenant_id or getattr(facts, "tenant_id", None)
        applies = tenant_id is not None and facts is not None and not isinstance(facts, DraftRenewal)
        try:
            if not applies:
                with self.db.write() as conn:
                    self._store_event(conn, note, tenant_id, body, now)
                return "applied" if facts is not None else "ignored"
            assert tenant_id is not None
            if self.db.is_sqlite:
                with self._tenant_lock(tenant_id), tenant_lease(self.db, tenant_id):  # issue 13: across processes
                    now, facts = clock(), self._facts(note, created)
                    with self.db.write() as conn:
                        self._store_event(conn, note, tenant_id, body, now)
                        outcome = self._apply(conn, note, tenant_id, facts, now)
            else:
                with self.db.write() as conn:
                    self._store_event(conn, note, tenant_id, body, now)
                    if self._locked(conn, tenant_id):
                        now, facts = clock(), self._facts(note, created)
                    outcome = self._apply(conn, note, tenant_id, facts, now)
        except IntegrityError:
            return "duplicate"  # the same event, applied meanwhile by a concurrent delivery
        if outcome == "applied" and isinstance(facts, ProviderSubscription):
            self._after_start(facts, now, started=note.type in STARTS)
        return outcome

    def _store_event(self, conn: Any, note: Notification, tenant_id: str | None, body: bytes, now: datetime) -> None:
        conn.execute(insert(provider_events).values(provider=self.provider.name, event_id=note.id, type=note.type,
                                                    tenant_id=tenant_id, payload=body.decode(), received_at=now))

    def _locked(self, conn: Any, tenant_id: str) -> bool:
        """Take the tenant's row lock; False if there is no such tenant."""
        try:
            self._row(conn, tenant_id)
        except NotFound:
            return False
        return True

    def _apply(self, conn: Any, note: Notification, tenant_id: str, facts: Any, now: datetime) -> str:
        try:
            if isinstance(facts, ProviderSubscription):
                self._sync_subscription(conn, facts, now)
            elif isinstance(facts, ChargeState):
                self._sync_invoice(conn, facts.tenant_id, facts.invoice_id, facts.paid_at,
                                   facts.first_failed_at, facts.failures, now)
            elif isinstance(facts, InvoiceMirror):
                self._mirror_invoice(conn, facts, now)
        except NotFound:
            log.warning("%s event %s is about tenant %r, which is not here; stored, not applied",
                        self.provider.name, note.id, tenant_id)
            return "ignored"
        return "applied"

    @contextlib.contextmanager
    def _tenant_lock(self, tenant_id: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._tenant_locks.setdefault(tenant_id, threading.Lock())
        with lock:
            yield

    def _facts(self, note: Notification, created: int) -> Any:
        """The object a notification names, as the provider has it now."""
        if note.subscription:
            return self.provider.subscription(note.subscription)
        if note.invoice and self.provider.owns_billing:
            return self.provider.invoice_facts(note.invoice, note.type, created)
        if note.invoice:
            return self.provider.charge_state(note.invoice)
        return None

    def _after_start(self, ps: ProviderSubscription, now: datetime, *, started: bool) -> None:
        """Once a plan runs, no other checkout of the tenant may start a second one; a provider
        subscription that is not the running plan (started in a race, or left running after an
        offline deal replaced it) is ended at the provider whenever one of its events comes."""
        with self.db.read() as conn:
            row = conn.execute(select(subscriptions.c.provider_subscription, subscriptions.c.status)
                               .where(subscriptions.c.tenant_id == ps.tenant_id)).first()
        if row is None:
            return
        current, status = row
        if current == ps.id:
            if started:
                with self.db.write() as conn:
                    self._command(conn, ps.tenant_id, "expire_checkouts", ps.customer, now)
        elif status == Status.ACTIVE.value and ps.status in ("active", "past_due", "trialing"):
            log.warning("tenant %s: a second subscription %s started while %s runs; ending it at the provider",
                        ps.tenant_id, ps.id, current or "an offline plan")
            with self.db.write() as conn:
                self._command(conn, ps.tenant_id, "end", ps.id, now)
                self._command(conn, ps.tenant_id, "refund", ps.id, now)  # what it was paid goes back (R8a)
        self.run_commands(now)

    def _add_overage(self, draft: DraftRenewal, now: datetime) -> None:
        """The extras of the period that ended (its segments not closed yet, each priced by its
        plan) on its renewal invoice while it is a draft; each line under its own idempotency key,
        then the segments closed by that invoice (R8a)."""
        with self.db.read() as conn:
            sub, row = self._load(conn, draft.tenant_id, now)
            if sub.status is not Status.ACTIVE or sub.anchor is None or row["provider_subscription"] is None:
                return
            ended = period_at(sub.anchor, draft.period_end - US)
            # The plan that period began on, for a period whose segments were not kept: as stored
            # then, or the one before a change that has since been stored at or after its end.
            plan = at(self._stored(row), ended.end - US).plan
            if row["previous_plan_id"] and row["plan_changed_at"] is not None and row["plan_changed_at"] >= ended.end:
                plan = self.catalog.get(row["previous_plan_id"]) or plan
            if plan is None:
                return
            closing = ledger.closing(self.book.segments(conn, draft.tenant_id, ended, plan),
                                     self.book.counter(conn, draft.tenant_id, ended))
        for seg in closing:
            line = ledger.extras_line(seg)
            if line is not None:
                self.provider.add_overage(draft, line.amount, line.description,
                                          f"overage-{draft.invoice_id}-{seg.start:%Y%m%d%H%M%S%f}")
        with self.db.write() as conn:
            self._row(conn, draft.tenant_id)  # the subscription's lock orders the tenant's billing
            for seg in closing:
                self.book.close(conn, draft.tenant_id, seg, draft.invoice_id)

    def _mirror_invoice(self, conn: Any, m: InvoiceMirror, now: datetime) -> None:
        """The provider's invoice as it stands there, kept beside ours (Stripe's invoices)."""
        sub, row = self._load_for_write(conn, m.tenant_id, now)  # the subscription first: the lock order of every write
        c = invoices.c
        old = conn.execute(select(invoices).where(c.tenant_id == m.tenant_id, c.id == m.id).with_for_update()) \
            .mappings().first()
        failed = [x for x in (m.failed_at, old["first_failed_at"] if old else None) if x is not None]
        values = {
            "provider_subscription": m.subscription, "kind": m.kind, "status": m.status, "currency": m.currency,
            "total": m.total, "lines": [{"description": d, "quantity": q, "unit_amount": a // q if q else a,
                                         "amount": a} for d, q, a in m.lines],
            "period_start": m.period_start, "period_end": m.period_end, "paid_at": m.paid_at,
            "attempts": m.attempts, "next_attempt_at": m.next_attempt_at if m.status == "open" else None,
            "first_failed_at": min(failed) if failed else None,
        }
        if old is None:
            conn.execute(insert(invoices).values(tenant_id=m.tenant_id, id=m.id, created_at=m.created_at, **values))
        else:
            conn.execute(update(invoices).where(c.tenant_id == m.tenant_id, c.id == m.id).values(**values))
        self._save(conn, self._with_payment_state(conn, sub, row["provider_subscription"]), now, row)

    def _sync_subscription(self, conn: Any, ps: ProviderSubscription, now: datetime) -> None:
        sub, row = self._load_for_write(conn, ps.tenant_id, now)
        extra: dict[str, Any] = {}
        if row["provider_subscription"] != ps.id:
            if sub.paid and sub.status is Status.ACTIVE:
                log.warning("tenant %s completed a second checkout (%s) while subscribed; ignored", ps.tenant_id, ps.id)
                return
            if ps.status not in ("active", "past_due", "trialing"):
                return  # not started (incomplete) or already over: nothing to start
            plan = self.catalog.get(ps.plan_id)
            if plan is None:
                log.error("checkout for unknown plan %r ignored", ps.plan_id)
                return
            sub = at(start_plan(sub, plan, ps.started_at, used=self.book.counter(conn, ps.tenant_id, TRIAL_COUNTER)), now)
            first_end = ps.period_end or add_months(ps.started_at, 1)
            extra = {"terms": None, "provider": self.provider.name, "provider_customer": ps.customer,
                     "provider_subscription": ps.id, "billed_until": first_end,
                     "previous_plan_id": None, "plan_changed_at": None}
            # The first period's first segment (R8a).
            self.book.put(conn, ps.tenant_id, ledger.opened(period_at(ps.started_at, ps.started_at), plan,
                                                            ps.started_at, 0))
            fi = ps.first_invoice
            if fi is not None:
                line = InvoiceLine(f"{plan.name} plan, {ps.started_at.date().isoformat()} to "
                                   f"{first_end.date().isoformat()}", 1, fi.total, fi.total)
                self._add_invoice(conn, ps.tenant_id, fi.id, "first", InvoiceDraft(fi.currency, (line,)),
                                  ps.started_at, first_end, ps.started_at, ps.id, to_charge=False, paid_at=fi.paid_at)
        if ps.owned:
            sub, owned = self._owned_state(conn, sub, ps, now, row)
            extra.update(owned)
        elif sub.status is Status.ACTIVE and sub.anchor is not None:
            # Cancel subscription / resume, as the provider has it now (R11).
            if ps.cancel_requested_at is not None:
                cancel_at = period_at(sub.anchor, ps.cancel_requested_at).end
                if sub.cancel_at != cancel_at:
                    sub = dataclasses.replace(sub, cancel_at=cancel_at, pending=None)
            elif sub.cancel_at is not None:
                sub = dataclasses.replace(sub, cancel_at=None)
        self._save(conn, sub, now, row, **extra)

    def _owned_state(self, conn: Any, sub: Subscription, ps: ProviderSubscription, now: datetime,
                     row: Mapping[str, Any]) -> tuple[Subscription, dict[str, Any]]:
        """The provider's subscription (Stripe's) as ours: its plan, scheduled change, cancellation
        and end; our own derivations (grace, lapse) stay on top."""
        if sub.status is not Status.ACTIVE:
            return sub, {}  # ended here already (unpaid at its period's end, or cancelled)
        extra: dict[str, Any] = {"billed_until": ps.period_end}
        plan = self.catalog.get(ps.plan_id)
        if plan is not None and sub.plan is not None and plan.id != sub.plan.id:
            self._split_at_provider(conn, row, sub, plan, now)
            sub = dataclasses.replace(sub, plan=plan, custom_limit=kept_limit(sub.custom_limit, plan))
        pending = None
        if ps.pending is not None and ps.cancel_at is None:
            nxt = self.catalog.get(ps.pending[0])
            pending = PlanChange(nxt, ps.pending[1]) if nxt is not None else None
        sub = dataclasses.replace(sub, pending=pending, cancel_at=ps.cancel_at)
        if ps.status in ("canceled", "incomplete_expired"):
            # Ended at the provider: cancelled by the tenant (Canceled subscription, R11), or for
            # want of payment (Expired subscription, R10).
            ended = ps.ended_at or now
            status = Status.CANCELED if ps.ended_by_request else Status.EXPIRED
            sub = dataclasses.replace(sub, status=status, ended_at=ended, pending=None,
                                      cancel_at=ended if ps.ended_by_request else sub.cancel_at)
        return sub, extra

    def _split_at_provider(self, conn: Any, row: Mapping[str, Any], sub: Subscription, plan: Plan,
                           now: datetime) -> None:
        """The provider put the subscription on `plan` (a schedule's phase came): the period's
        segments split where the change was due, or now; the renewal closes both (R8a). A change
        made here (immediate) split them already."""
        assert sub.anchor is not None and sub.plan is not None
        moment = row["pending_at"] if row["pending_plan_id"] == plan.id and row["pending_at"] is not None \
            and row["pending_at"] <= now else now
        period = period_at(sub.anchor, moment)
        if self.book.running(conn, row["tenant_id"], period, sub.plan).plan.id == plan.id or moment == period.start:
            return
        self._split(conn, row["tenant_id"], period, sub.plan, plan, moment,
                    self.book.counter(conn, row["tenant_id"], period), None)

    def _sync_invoice(self, conn: Any, tenant_id: str, invoice_id: str, paid_at: datetime | None,
                      first_failed_at: datetime | None, failures: int, now: datetime) -> None:
        sub, row = self._load_for_write(conn, tenant_id, now)  # the subscription first: the lock order of every write
        inv = conn.execute(select(invoices).where(invoices.c.tenant_id == tenant_id, invoices.c.id == invoice_id)
                           .with_for_update()).mappings().first()
        if inv is None or inv["status"] != "open":
            self._save(conn, sub, now, row)
            return
        if inv["change_plan_id"] is not None:
            self._settle_change(conn, sub, row, inv, paid_at, now)
            return
        if paid_at is not None:
            values: dict[str, Any] = {"status": "paid", "paid_at": paid_at, "next_attempt_at": None}
        else:
            assert first_failed_at is not None
            nxt = next_retry(first_failed_at, failures, self.grace)
            values = {"first_failed_at": first_failed_at, "attempts": max(inv["attempts"], failures),
                      "next_attempt_at": nxt}
        conn.execute(update(invoices).where(invoices.c.tenant_id == tenant_id, invoices.c.id == invoice_id)
                     .values(**values))
        self._save(conn, self._with_payment_state(conn, sub, row["provider_subscription"]), now, row)

    def _settle_change(self, conn: Any, sub: Subscription, row: Mapping[str, Any], inv: Mapping[str, Any],
                       paid_at: datetime | None, now: datetime) -> None:
        """An upgrade's invoice answered: paid, the change is made as of when it was asked; failed,
        nothing changes, the invoice is voided and no payment issue follows (R8)."""
        c = invoices.c
        tenant_id, invoice_id = row["tenant_id"], inv["id"]
        if paid_at is None:
            conn.execute(update(invoices).where(c.tenant_id == tenant_id, c.id == invoice_id)
                         .values(status="void", next_attempt_at=None, first_failed_at=None))
            self._command(conn, tenant_id, "void", invoice_id, now)
            self._save(conn, sub, now, row)
            return
        conn.execute(update(invoices).where(c.tenant_id == tenant_id, c.id == invoice_id)
                     .values(status="paid", paid_at=paid_at, next_attempt_at=None))
        target = self.catalog.get(inv["change_plan_id"])
        credits = self.book.credits(conn, tenant_id)
        currency = inv["currency"]
        moment = inv["change_at"]
        if (target is None or sub.status is not Status.ACTIVE or sub.plan is None or sub.plan.id == target.id
                or sub.cancel_at is not None or row["provider_subscription"] != inv["provider_subscription"]
                or sub.anchor is None or not sub.period(now).contains(moment)):
            # The plan moved on before the payment came: it is kept as credit, not lost.
            self.book.put_credits(conn, tenant_id, ledger.add_credit(credits, Money(inv["total"], currency)))
            self._save(conn, sub, now, row)
            return
        used = -sum(x["amount"] for x in inv["lines"] if x["description"] == ledger.CREDIT_LINE)
        credits = {**credits, currency: max(0, credits.get(currency, 0) - used)}
        self._make_change(conn, row, sub, target, moment, inv["change_counter"], invoice_id,
                          {k: v for k, v in credits.items() if v})

    def _with_payment_state(self, conn: Any, sub: Subscription, provider_subscription: str | None) -> Subscription:
        """Payment issue while an invoice of the running plan is unpaid after a failed charge (R10)."""
        c = invoices.c
        oldest = conn.execute(select(c.first_failed_at).where(
            c.tenant_id == sub.tenant_id, c.status == "open", c.first_failed_at.is_not(None),
            c.provider_subscription == provider_subscription).order_by(c.first_failed_at).limit(1)).scalar()
        return with_payment_failed(sub, oldest, self.grace)

    # -- what comes due as time passes ---------------------------------------------------------

    def run_due(self, now: datetime) -> int:
        """Apply everything due by `now`: deliver the provider's pending events, store what time did
        to each subscription, renew the periods that began, and charge the invoices due. Returns
        how many subscriptions had something due."""
        self.provider.deliver_pending()
        c = subscriptions.c
        with self.db.read() as conn:
            # A payment failure adds nothing due of its own: its retries are the invoices' (`collect`),
            # and the lapse it brings falls at the end of the period, which `billed_until` marks (R10).
            tenants = conn.execute(select(c.tenant_id).where(c.status == Status.ACTIVE.value, or_(
                c.pending_at <= now, c.cancel_at <= now, c.billed_until <= now,
            ))).scalars().all()
        for tenant_id in tenants:
            self._advance_tenant(tenant_id, now)
        self.run_commands(now)
        if self.provider.owns_billing:
            self._end_lapsed_at_provider()
        self.collect(now)
        return len(tenants)

    def due_count(self, now: datetime) -> int:
        """Subscriptions with something time has made due and no worker has written yet."""
        c = subscriptions.c
        with self.db.read() as conn:
            # Renewals are ours to make unless the provider bills (Stripe renews its own).
            renewals = false() if self.provider.owns_billing else and_(
                c.billed_until <= now, c.offline.is_(False), c.provider.is_not(None))
            return conn.execute(select(func.count()).select_from(subscriptions).where(
                c.status == Status.ACTIVE.value, or_(c.pending_at <= now, c.cancel_at <= now, renewals))).scalar() or 0

    def _advance_tenant(self, tenant_id: str, now: datetime) -> None:
        """Store what time did to one subscription: its steps with their invoices (`_catch_up`)."""
        with self.db.write() as conn:
            try:
                self._load_for_write(conn, tenant_id, now)
            except NotFound:
                return

    # -- what the provider must still be told ------------------------------------------------

    def _command(self, conn: Any, tenant_id: str, kind: str, target: str | None, now: datetime) -> None:
        conn.execute(insert(provider_commands).values(tenant_id=tenant_id, kind=kind, target=target, created_at=now))

    def run_commands(self, now: datetime) -> int:
        """Tell the provider what was decided and not yet told (after the deciding commit, and again
        by every pass until it went through); how many went. At least once: each is idempotent."""
        c = provider_commands.c
        with self.db.read() as conn:
            pending = conn.execute(select(c.id, c.tenant_id, c.kind, c.target).where(c.done_at.is_(None))
                                   .order_by(c.id).limit(200)).all()
        done = 0
        for command_id, tenant_id, kind, target in pending:
            try:
                if kind == "void":
                    self.provider.void(tenant_id, target)
                elif kind == "end":
                    self.provider.end_now(target)
                elif kind == "expire_checkouts":
                    self.provider.expire_checkouts(tenant_id, target)
                elif kind == "final_invoice":
                    self._invoice_final_at_provider(tenant_id, target)
                elif kind == "refund":
                    self._refund_at_provider(tenant_id, target, now)
                else:
                    raise ValueError(f"unknown provider command {kind!r}")
            except Exception as err:  # the provider is down or refused: kept for the next pass
                log.warning("provider command %s (%s %s) failed; kept for the next pass: %s", command_id, kind,
                            target, err)
                with self.db.write() as conn:
                    conn.execute(update(provider_commands).where(c.id == command_id)
                                 .values(attempts=c.attempts + 1, last_error=str(err)[:500]))
                continue
            with self.db.write() as conn:
                conn.execute(update(provider_commands).where(c.id == command_id)
                             .values(done_at=now, attempts=c.attempts + 1))
            done += 1
        return done

    def _end_lapsed_at_provider(self) -> None:
        """A plan that ended unpaid (R10) is ended at a provider that renews by itself, so that it
        stops charging; once (billed_until is cleared when done)."""
        c = subscriptions.c
        with self.db.read() as conn:
            lapsed = conn.execute(select(c.tenant_id, c.provider_subscription, c.ended_at).where(
                c.status == Status.EXPIRED.value, c.provider == self.provider.name,
                c.provider_subscription.is_not(None), c.billed_until.is_not(None))).all()
        for tenant_id, provider_subscription, ended_at in lapsed:
            self.provider.end_now(provider_subscription)
            if ended_at is not None:  # a renewal made at or after the lapse is for a period it never ran
                self.provider.void_renewals_since(provider_subscription, ended_at)
            with self.db.write() as conn:
                conn.execute(update(subscriptions).where(c.tenant_id == tenant_id).values(billed_until=None))

    def collect(self, now: datetime) -> int:
        """Charge the invoices whose attempt is due, each attempt handed to the provider once."""
        if self.provider.owns_billing:
            return 0  # the provider charges and retries its own invoices
        c = invoices.c
        with self.db.read() as conn:
            due = conn.execute(select(c.tenant_id, c.id).where(c.status == "open", c.next_attempt_at <= now)
                               .order_by(c.next_attempt_at)).all()
        charged = 0
        for tenant_id, invoice_id in due:
            with self.db.write() as conn:
                inv = conn.execute(select(invoices).where(c.tenant_id == tenant_id, c.id == invoice_id,
                                                          c.status == "open", c.next_attempt_at <= now)
                                   .with_for_update()).mappings().first()
                if inv is None:
                    continue  # charged by another worker meanwhile
                attempt = inv["attempts"] + 1
                conn.execute(update(invoices).where(c.tenant_id == tenant_id, c.id == invoice_id)
                             .values(attempts=attempt, next_attempt_at=now + LEASE))
            self.provider.charge(tenant_id, invoice_id, inv["total"], inv["currency"], f"{invoice_id}-{attempt}", now)
            charged += 1
        return charged

    def next_due(self, after: datetime) -> datetime | None:
        """The earliest moment after `after` at which `run_due` has something to do."""
        c = subscriptions.c
        moments: list[datetime] = []
        with self.db.read() as conn:
            rows = conn.execute(select(subscriptions).where(c.status == Status.ACTIVE.value)).mappings().all()
            for row in rows:
                sub = self._stored(row)
                candidates = [sub.pending.effective_at if sub.pending else None, sub.cancel_at, sub.lapses_at(),
                              sub.grace_ends_at, row["billed_until"] if row["provider"] else None]
                moments += [m for m in candidates if m is not None and m > after]
            nxt = conn.execute(select(invoices.c.next_attempt_at).where(
                invoices.c.status == "open", invoices.c.next_attempt_at > after)
                .order_by(invoices.c.next_attempt_at).limit(1)).scalar()
        if nxt is not None:
            moments.append(nxt)
        return min(moments) if moments else None


def _date(value: object) -> date:
    if not isinstance(value, str):
        raise InvalidInput("On custom date needs a date (YYYY-MM-DD).")
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not a date: use YYYY-MM-DD.") from None
    if len(value) != 10:
        raise InvalidInput(f"{value!r} is not a date: use YYYY-MM-DD.")
    return parsed
