"""What the provider must still be told: commands written with the decision that needs them,
carried out after its commit by a table from command kind to handler, again until each went."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from agentbilling.domain import ledger
from agentbilling.domain.invoicing import InvoiceDraft, InvoiceLine
from agentbilling.payments.provider import billing_provider
from agentbilling.storage.tables import provider_commands, subscriptions
from agentbilling.usecases.invoices import add_invoice
from agentbilling.usecases.paid_plans import PaidPlans

log = logging.getLogger(__name__)


def command(conn: Any, tenant_id: str, kind: str, target: str | None, now: datetime) -> None:
    """Tell the provider `kind` about `target` once this transaction commits (`run_commands`)."""
    conn.execute(insert(provider_commands).values(tenant_id=tenant_id, kind=kind, target=target, created_at=now))


def _void(billing: PaidPlans, tenant_id: str, invoice_id: str, now: datetime) -> None:
    billing.provider.void(tenant_id, invoice_id)


def _end(billing: PaidPlans, tenant_id: str, subscription_id: str, now: datetime) -> None:
    billing.provider.end_now(subscription_id)


def _expire_checkouts(billing: PaidPlans, tenant_id: str, customer: str | None, now: datetime) -> None:
    billing.provider.expire_checkouts(tenant_id, customer)


def _final_invoice(billing: PaidPlans, tenant_id: str, subscription_id: str, now: datetime) -> None:
    """The extras of a plan the provider bills, closed when it ended, on its final invoice there."""
    with billing.db.read() as conn:
        customer = conn.execute(select(subscriptions.c.provider_customer)
                                .where(subscriptions.c.tenant_id == tenant_id)).scalar()
        closed = billing.book.closed_by(conn, tenant_id, f"final:{subscription_id}")
    lines = []
    for seg in closed:
        line = ledger.extras_line(seg)
        if line is not None and seg.plan.overage_price is not None:
            lines.append((line.amount, line.description, seg.plan.overage_price.currency))
    if lines and customer:
        billing_provider(billing.provider).final_invoice(customer, subscription_id, lines[0][2],
                                                         [(a, d) for a, d, _ in lines], f"final-{subscription_id}")


def _refund(billing: PaidPlans, tenant_id: str, subscription_id: str, now: datetime) -> None:
    """Refund a subscription started in a race, each refund recorded as a credit note."""
    for invoice_id, amount, currency in billing.provider.refund_subscription(subscription_id):
        line = InvoiceLine(f"Refund of {invoice_id}: a second subscription started while a plan ran", 1,
                           -amount, -amount)
        with billing.db.write() as conn:
            add_invoice(conn, tenant_id, f"cn_{invoice_id[-40:]}", "credit_note", InvoiceDraft(currency, (line,)),
                        now, now, now, subscription_id, to_charge=False)


HANDLERS: dict[str, Callable[[PaidPlans, str, Any, datetime], None]] = {
    "void": _void,
    "end": _end,
    "expire_checkouts": _expire_checkouts,
    "final_invoice": _final_invoice,
    "refund": _refund,
}


def run_commands(billing: PaidPlans, now: datetime) -> int:
    """Tell the provider what was decided and not yet told (after the deciding commit, and again
    by every pass until it went through); how many went. At least once: each is idempotent."""
    c = provider_commands.c
    with billing.db.read() as conn:
        pending = conn.execute(select(c.id, c.tenant_id, c.kind, c.target).where(c.done_at.is_(None))
                               .order_by(c.id).limit(200)).all()
    done = 0
    for command_id, tenant_id, kind, target in pending:
        try:
            handler = HANDLERS.get(kind)
            if handler is None:
                raise ValueError(f"unknown provider command {kind!r}")
            handler(billing, tenant_id, target, now)
        except Exception as err:  # the provider is down or refused: kept for the next pass
            log.warning("provider command %s (%s %s) failed; kept for the next pass: %s", command_id, kind,
                        target, err)
            with billing.db.write() as conn:
                conn.execute(update(provider_commands).where(c.id == command_id)
                             .values(attempts=c.attempts + 1, last_error=str(err)[:500]))
            continue
        with billing.db.write() as conn:
            conn.execute(update(provider_commands).where(c.id == command_id)
                         .values(done_at=now, attempts=c.attempts + 1))
        done += 1
    return done
