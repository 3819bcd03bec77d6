"""The sandbox payment provider: a secure billing portal served by agentbilling itself, with test
cards, reporting every outcome through signed webhooks; README.md, "Design decisions"."""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import insert, select, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from agentbilling.domain.errors import CardDeclined, Conflict, InvalidInput, NotFound
from agentbilling.domain.plans import Plan
from agentbilling.payments.provider import (
    ChargeState,
    Checkout,
    InvoiceFacts,
    Notification,
    ProviderSubscription,
    WebhookRejected,
)
from agentbilling.storage.db import Database
from agentbilling.storage.tables import (
    sandbox_charges,
    sandbox_checkouts,
    sandbox_customers,
    sandbox_events,
    sandbox_voids,
)

log = logging.getLogger(__name__)

CARD_OK = "4242424242424242"
CARD_CHARGES_FAIL = "4000000000000341"
CARD_DECLINED = "4000000000000002"
TEST_CARDS = (CARD_OK, CARD_CHARGES_FAIL, CARD_DECLINED)

PORTAL_LINK_INVALID = "This portal link is not valid. Open the portal again from the Billing tab."
PORTAL_LINK_SECONDS = 3600  # a portal link opens the portal for an hour, as a provider's portal session

Deliver = Callable[[bytes, Mapping[str, str]], None]


def card_number(raw: object) -> str:
    """A test card's number, spaces and dashes allowed; any other is refused (this is a sandbox)."""
    if not isinstance(raw, str):
        raise InvalidInput("card must be a test card number, e.g. 4242424242424242.")
    number = raw.replace(" ", "").replace("-", "")
    if number not in TEST_CARDS:
        raise InvalidInput(
            "The sandbox takes test cards only: 4242424242424242 (succeeds), "
            "4000000000000341 (charges fail) or 4000000000000002 (declined)."
        )
    return number


def last4(number: str | None) -> str | None:
    return number[-4:] if number else None


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class SandboxProvider:
    """Keeps its own books (the `sandbox_*` tables) as a provider does: customers, cards, checkouts, charges.

    Each change and its event are written in one transaction (an outbox); the events are then signed and
    delivered in order to the service's webhook receiver until each is answered. An event left
    undelivered by a crash goes with the next pass (`deliver_pending`)."""
    name = "sandbox"
    owns_billing = False  # agentbilling renews, invoices and retries; the sandbox charges

    def __init__(self, db: Database, webhook_secret: str, link_secret: str) -> None:
        self.db = db
        self.webhook = Webhook(webhook_secret)
        self.links = URLSafeTimedSerializer(link_secret, salt="sandbox-portal")
        self.deliver: Deliver | None = None  # the service's receiver, set when it is wired
        self._delivering = threading.Lock()

    # -- what the service asks of the provider ----------------------------------------------

    def create_checkout(self, tenant_id: str, plan: Plan, now: datetime, base_url: str,
                        customer: str | None = None, email: str | None = None) -> Checkout:
        assert plan.price is not None, "only priced plans go through checkout"
        checkout_id = _id("cs")
        with self.db.write() as conn:
            conn.execute(insert(sandbox_checkouts).values(
                id=checkout_id, tenant_id=tenant_id, plan_id=plan.id, plan_name=plan.name,
                amount=plan.price.amount, currency=plan.price.currency, status="open", created_at=now,
                return_url=f"{base_url}/billing",
            ))
        return Checkout(checkout_id, f"{base_url}/sandbox/checkout/{checkout_id}")

    def clock_moved(self, moment: datetime) -> None:
        """The sandbox keeps no clock of its own."""

    def portal_url(self, tenant_id: str, base_url: str, customer: str | None = None) -> str:
        """A link that names no user: it opens nothing (see `user_portal_url`, which the service hands out)."""
        return f"{base_url}/sandbox/portal/{self.links.dumps([tenant_id, None, None])}"

    def user_portal_url(self, tenant_id: str, user_id: str, user_nonce: str, base_url: str) -> str:
        """A portal link naming the user it was made for; the service re-checks that user on every request."""
        return f"{base_url}/sandbox/portal/{self.links.dumps([tenant_id, user_id, user_nonce])}"

    def portal_claims(self, token: str) -> tuple[str, str, str]:
        """(tenant, user, user's nonce) of an unexpired link; NotFound for anything else."""
        try:
            # wall clock: security time
            tenant_id, user_id, nonce = self.links.loads(token, max_age=PORTAL_LINK_SECONDS)
        except (BadSignature, ValueError, TypeError):
            raise NotFound(PORTAL_LINK_INVALID) from None
        if not (isinstance(tenant_id, str) and isinstance(user_id, str) and isinstance(nonce, str)):
            raise NotFound(PORTAL_LINK_INVALID)
        return tenant_id, user_id, nonce

    def charge(self, tenant_id: str, invoice_id: str, amount: int, currency: str, attempt: str,
               now: datetime) -> None:
        with self.db.write() as conn:
            self._charge(conn, tenant_id, invoice_id, amount, currency, attempt, now)
        self.deliver_pending()

    def void(self, tenant_id: str, invoice_id: str) -> None:
        with self.db.write() as conn:
            if conn.execute(select(sandbox_voids.c.invoice_id).where(sandbox_voids.c.invoice_id == invoice_id)).first():
                return
            conn.execute(insert(sandbox_voids).values(invoice_id=invoice_id, tenant_id=tenant_id,
                                                      voided_at=datetime.now(UTC)))

    def expire_checkouts(self, tenant_id: str, customer: str | None) -> None:
        with self.db.write() as conn:
            conn.execute(update(sandbox_checkouts).where(sandbox_checkouts.c.tenant_id == tenant_id,
                                                         sandbox_checkouts.c.status == "open").values(status="expired"))

    def void_renewals_since(self, subscription_id: str, moment: datetime) -> None:
        """The sandbox renews nothing by itself."""

    def refund_subscription(self, subscription_id: str) -> list[tuple[str, int, str]]:
        """Nothing to refund: a second checkout of a tenant cannot be paid here (complete_checkout
        locks the tenant's checkouts; the second finds itself expired)."""
        return []

    def end_now(self, subscription_id: str) -> None:
        """Nothing to stop: the sandbox charges only what the service asks it to, and renews nothing."""

    def subscription(self, subscription_id: str) -> ProviderSubscription | None:
        with self.db.read() as conn:
            row = conn.execute(
                select(sandbox_customers, sandbox_checkouts.c.id.label("checkout_id"), sandbox_checkouts.c.amount,
                       sandbox_checkouts.c.currency, sandbox_checkouts.c.completed_at)
                .join(sandbox_checkouts, sandbox_checkouts.c.subscription_id == sandbox_customers.c.subscription_id)
                .where(sandbox_customers.c.subscription_id == subscription_id)
            ).mappings().first()
        if row is None:
            return None
        return ProviderSubscription(
            id=subscription_id, tenant_id=row["tenant_id"], customer=row["customer_id"], plan_id=row["plan_id"],
            started_at=row["subscribed_at"], cancel_requested_at=row["cancel_requested_at"],
            first_invoice=InvoiceFacts(_first_invoice(row["checkout_id"]), row["currency"], row["amount"],
                                       row["completed_at"]),
        )

    def charge_state(self, invoice_id: str) -> ChargeState | None:
        c = sandbox_charges.c
        with self.db.read() as conn:
            rows = conn.execute(select(c.tenant_id, c.succeeded, c.created_at).where(c.invoice_id == invoice_id)).all()
        if not rows:
            return None
        paid = [r.created_at for r in rows if r.succeeded]
        failed = [r.created_at for r in rows if not r.succeeded]
        return ChargeState(invoice_id, rows[0].tenant_id, min(paid) if paid else None, len(failed),
                           min(failed) if failed else None)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        try:
            event = self.webhook.verify(body, dict(headers))
        except (WebhookVerificationError, ValueError, TypeError) as err:  # malformed headers raise the latter
            raise WebhookRejected(str(err) or "bad signature") from None
        if (not isinstance(event, dict) or not isinstance(event.get("id"), str)
                or not isinstance(event.get("type"), str)):
            raise WebhookRejected("not an event")
        data = event.get("data") or {}
        if not isinstance(data, dict):
            raise WebhookRejected("an event whose data is not an object")
        return Notification(id=event["id"], type=event["type"], tenant_id=data.get("tenant_id"),
                            subscription=data.get("subscription"), invoice=data.get("invoice"), raw=event)

    def deliver_pending(self) -> int:
        """Deliver the outbox in order, one pass at a time; an event whose delivery fails stays for
        the next pass, and so do those after it (a receiver sees them in order when it can)."""
        if self.deliver is None:
            return 0
        sent = 0
        with self._delivering:
            while True:
                with self.db.read() as conn:
                    rows = conn.execute(
                        select(sandbox_events.c.seq, sandbox_events.c.id, sandbox_events.c.body)
                        .where(sandbox_events.c.delivered_at.is_(None)).order_by(sandbox_events.c.seq).limit(100)
                    ).all()
                if not rows:
                    return sent
                for seq, event_id, body in rows:
                    try:
                        self.deliver(body.encode(), self.sign(event_id, body))
                    except Exception:
                        log.exception("sandbox: delivering %s failed; it stays in the outbox", event_id)
                        return sent
                    with self.db.write() as conn:
                        conn.execute(update(sandbox_events).where(sandbox_events.c.seq == seq)
                                     .values(delivered_at=datetime.now(UTC)))
                    sent += 1

    def sign(self, event_id: str, body: str, at: datetime | None = None) -> dict[str, str]:
        """Standard Webhooks headers for a body; the timestamp is the wall clock's (security time)."""
        moment = at or datetime.now(UTC)
        return {
            "webhook-id": event_id,
            "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": self.webhook.sign(event_id, moment, body),
            "content-type": "application/json",
        }

    # -- what a person does in the portal (and the automation API does for tests and demos) -----

    def checkout(self, checkout_id: str) -> Mapping[str, Any]:
        with self.db.read() as conn:
            row = conn.execute(select(sandbox_checkouts)
                               .where(sandbox_checkouts.c.id == checkout_id)).mappings().first()
        if row is None:
            raise NotFound(f"No checkout {checkout_id!r}.")
        return row

    def complete_checkout(self, checkout_id: str, card: object, now: datetime) -> str:
        """Pay a checkout with a test card: the subscription starts and its first invoice is paid.
        A declined card (or one whose charges fail) changes nothing."""
        number = card_number(card)
        status = self.checkout(checkout_id)["status"]
        if status != "open":
            raise Conflict(f"This checkout is {status}: open a new one from the Billing tab.")
        if number != CARD_OK:
            raise CardDeclined("Your card was declined. Try another card.")
        tenant_id = self.checkout(checkout_id)["tenant_id"]
        with self.db.write() as conn:
            # The tenant's open checkouts, locked in one order: two completed at once never deadlock,
            # and the second finds itself expired by the first.
            conn.execute(select(sandbox_checkouts.c.id).where(sandbox_checkouts.c.tenant_id == tenant_id,
                                                              sandbox_checkouts.c.status == "open")
                         .order_by(sandbox_checkouts.c.id).with_for_update()).all()
            co = conn.execute(select(sandbox_checkouts).where(sandbox_checkouts.c.id == checkout_id)).mappings().first()
            if co is None:
                raise NotFound(f"No checkout {checkout_id!r}.")
            if co["status"] != "open":
                raise Conflict(f"This checkout is {co['status']}: open a new one from the Billing tab.")
            customer = self._customer(conn, co["tenant_id"], now)
            # One subscription per customer at a time: the tenant's other checkouts close.
            conn.execute(update(sandbox_checkouts).where(sandbox_checkouts.c.tenant_id == co["tenant_id"],
                                                         sandbox_checkouts.c.id != checkout_id,
                                                         sandbox_checkouts.c.status == "open")
                         .values(status="expired"))
            subscription_id = _id("sub")
            conn.execute(update(sandbox_customers).where(sandbox_customers.c.tenant_id == co["tenant_id"]).values(
                card_number=number, subscription_id=subscription_id, plan_id=co["plan_id"], subscribed_at=now,
                cancel_requested_at=None, updated_at=now))
            conn.execute(update(sandbox_checkouts).where(sandbox_checkouts.c.id == checkout_id).values(
                status="complete", completed_at=now, subscription_id=subscription_id))
            conn.execute(insert(sandbox_charges).values(
                invoice_id=_first_invoice(checkout_id), attempt="checkout", tenant_id=co["tenant_id"],
                amount=co["amount"], currency=co["currency"], succeeded=True, created_at=now))
            self._event(conn, "checkout.completed", now, tenant_id=co["tenant_id"], customer=customer,
                        subscription=subscription_id, checkout=checkout_id)
        self.deliver_pending()
        return subscription_id

    def add_payment_method(self, tenant_id: str, card: object, now: datetime) -> None:
        """+ Add payment method: the card becomes the default, and every open invoice is retried at once."""
        number = card_number(card)
        if number == CARD_DECLINED:
            raise CardDeclined("Your card was declined. Try another card.")
        with self.db.write() as conn:
            customer = self._customer(conn, tenant_id, now)
            conn.execute(update(sandbox_customers).where(sandbox_customers.c.tenant_id == tenant_id)
                         .values(card_number=number, updated_at=now))
            self._event(conn, "payment_method.attached", now, tenant_id=tenant_id, customer=customer,
                        card_last4=last4(number))
            c = sandbox_charges.c
            charges = conn.execute(select(c.invoice_id, c.amount, c.currency, c.succeeded)
                                   .where(c.tenant_id == tenant_id).order_by(c.created_at, c.invoice_id)).all()
            voided = set(conn.execute(select(sandbox_voids.c.invoice_id)
                                      .where(sandbox_voids.c.tenant_id == tenant_id)).scalars())
            paid = {r.invoice_id for r in charges if r.succeeded} | voided
            unpaid = {r.invoice_id: (r.invoice_id, r.amount, r.currency) for r in charges if r.invoice_id not in paid}
            attempt = _id("pm")
            for invoice_id, amount, currency in unpaid.values():
                self._charge(conn, tenant_id, invoice_id, amount, currency, attempt, now)
        self.deliver_pending()

    def cancel(self, tenant_id: str, now: datetime) -> None:
        self._set_cancel(tenant_id, now, now)

    def resume(self, tenant_id: str, now: datetime) -> None:
        self._set_cancel(tenant_id, None, now)

    def customer(self, tenant_id: str) -> Mapping[str, Any] | None:
        with self.db.read() as conn:
            return conn.execute(select(sandbox_customers).where(sandbox_customers.c.tenant_id == tenant_id)) \
                .mappings().first()

    # -- pieces ------------------------------------------------------------------------------

    def _set_cancel(self, tenant_id: str, requested: datetime | None, now: datetime) -> None:
        with self.db.write() as conn:
            row = conn.execute(select(sandbox_customers).where(sandbox_customers.c.tenant_id == tenant_id)
                               .with_for_update()).mappings().first()
            if row is None or row["subscription_id"] is None:
                raise Conflict("There is no subscription to cancel or resume.")
            if (row["cancel_requested_at"] is None) == (requested is None):
                return  # already so: nothing happens, as in a portal
            conn.execute(update(sandbox_customers).where(sandbox_customers.c.tenant_id == tenant_id)
                         .values(cancel_requested_at=requested, updated_at=now))
            self._event(conn, "subscription.updated", now, tenant_id=tenant_id, customer=row["customer_id"],
                        subscription=row["subscription_id"])
        self.deliver_pending()

    def _customer(self, conn: Any, tenant_id: str, now: datetime) -> str:
        row = conn.execute(select(sandbox_customers.c.customer_id).where(sandbox_customers.c.tenant_id == tenant_id)
                           .with_for_update()).first()
        if row is not None:
            return row[0]
        customer = _id("cus")
        conn.execute(insert(sandbox_customers).values(tenant_id=tenant_id, customer_id=customer, updated_at=now))
        return customer

    def _charge(self, conn: Any, tenant_id: str, invoice_id: str, amount: int, currency: str, attempt: str,
                now: datetime) -> None:
        """One charge per (invoice, attempt), never of an invoice already paid or voided. The
        customer's row is locked first, so two charges of one tenant never run at once."""
        c = sandbox_charges.c
        card = conn.execute(select(sandbox_customers.c.card_number).where(sandbox_customers.c.tenant_id == tenant_id)
                            .with_for_update()).scalar_one_or_none()
        done = conn.execute(select(c.succeeded).where(c.invoice_id == invoice_id)).scalars().all()
        if any(done) or conn.execute(select(sandbox_voids.c.invoice_id)
                                     .where(sandbox_voids.c.invoice_id == invoice_id)).first():
            return
        if conn.execute(select(c.attempt).where(c.invoice_id == invoice_id, c.attempt == attempt)).first():
            return
        succeeded = card == CARD_OK
        conn.execute(insert(sandbox_charges).values(invoice_id=invoice_id, attempt=attempt, tenant_id=tenant_id,
                                                    amount=amount, currency=currency, succeeded=succeeded,
                                                    created_at=now))
        self._event(conn, "invoice.paid" if succeeded else "invoice.payment_failed", now, tenant_id=tenant_id,
                    invoice=invoice_id, amount=amount, currency=currency)

    def _event(self, conn: Any, type_: str, now: datetime, **data: Any) -> None:
        event_id = _id("evt")
        body = json.dumps({"id": event_id, "type": type_, "created": now.isoformat(), "data": data},
                          separators=(",", ":"))
        conn.execute(insert(sandbox_events).values(id=event_id, type=type_, body=body, created_at=now))


def _first_invoice(checkout_id: str) -> str:
    return "in_" + checkout_id.removeprefix("cs_")
