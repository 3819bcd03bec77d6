"""Invoices: recorded once by their id, listed and read, what a tenant owes, and the charges that
come due (when agentbilling bills)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import RowMapping, insert, select, update
from sqlalchemy.exc import IntegrityError

from agentbilling.domain.errors import NotFound
from agentbilling.domain.invoicing import InvoiceDraft, InvoiceLine
from agentbilling.domain.money import Money
from agentbilling.storage.tables import invoices
from agentbilling.usecases.cursors import newest_first
from agentbilling.usecases.paid_plans import PaidPlans
from agentbilling.usecases.results import Invoice

# A charge handed to the provider is not handed again before this, unless its webhook says so.
LEASE = timedelta(minutes=10)


def _invoice(row: RowMapping) -> Invoice:
    lines = [InvoiceLine(x["description"], x["quantity"], x["unit_amount"], x["amount"]) for x in row["lines"]]
    return Invoice(row["id"], row["kind"], row["status"], row["currency"], row["total"], lines, row["period_start"],
                   row["period_end"], row["created_at"], row["paid_at"], row["attempts"])


def _lines_json(draft: InvoiceDraft) -> list[dict[str, Any]]:
    return [dataclasses.asdict(line) for line in draft.lines]


def add_invoice(conn: Any, tenant_id: str, invoice_id: str, kind: str, draft: InvoiceDraft,
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


def list_invoices(billing: PaidPlans, tenant_id: str, cursor: str | None,
                  limit: int) -> tuple[list[Invoice], str | None]:
    return newest_first(billing.db, select(invoices).where(invoices.c.tenant_id == tenant_id),
                        invoices.c.created_at, invoices.c.id, cursor, limit, lambda r: _invoice(r._mapping),
                        lambda i: (i.created_at, i.id))


def read_invoice(billing: PaidPlans, tenant_id: str, invoice_id: str) -> Invoice:
    with billing.db.read() as conn:
        row = conn.execute(select(invoices).where(invoices.c.tenant_id == tenant_id, invoices.c.id == invoice_id)) \
            .mappings().first()
    if row is None:
        raise NotFound(f"No invoice {invoice_id!r}.")
    return _invoice(row)


def balances(billing: PaidPlans, tenant_id: str) -> tuple[list[Money], dict[str, int]]:
    """What the tenant owes (open invoices, per currency) and the credit it holds (per currency)."""
    with billing.db.read() as conn:
        return billing.book.balances_due(conn, tenant_id), billing.book.credits(conn, tenant_id)


def collect(billing: PaidPlans, now: datetime) -> int:
    """Charge the invoices whose attempt is due, each attempt handed to the provider once (when
    agentbilling bills: a provider that bills charges and retries its own invoices)."""
    c = invoices.c
    with billing.db.read() as conn:
        due = conn.execute(select(c.tenant_id, c.id).where(c.status == "open", c.next_attempt_at <= now)
                           .order_by(c.next_attempt_at)).all()
    charged = 0
    for tenant_id, invoice_id in due:
        with billing.db.write() as conn:
            inv = conn.execute(select(invoices).where(c.tenant_id == tenant_id, c.id == invoice_id,
                                                      c.status == "open", c.next_attempt_at <= now)
                               .with_for_update()).mappings().first()
            if inv is None:
                continue  # charged by another worker meanwhile
            attempt = inv["attempts"] + 1
            conn.execute(update(invoices).where(c.tenant_id == tenant_id, c.id == invoice_id)
                         .values(attempts=attempt, next_attempt_at=now + LEASE))
        billing.provider.charge(tenant_id, invoice_id, inv["total"], inv["currency"], f"{invoice_id}-{attempt}", now)
        charged += 1
    return charged
