"""The ledger's rows (domain/ledger.py): the segments of a tenant's paid periods, its credit per currency,
and what it owes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from babel.numbers import format_currency, get_currency_precision
from sqlalchemy import delete, insert, select, update

from agentbilling.domain import ledger
from agentbilling.domain.ledger import Segment
from agentbilling.domain.money import Money
from agentbilling.domain.periods import Period
from agentbilling.domain.plans import Catalog, Plan
from agentbilling.storage.tables import credit_balances, invoices, segments, usage_counters


class Book:
    """The ledger's reads and writes, each inside the caller's transaction.

    That transaction holds the tenant's subscription row: the lock orders all of a tenant's billing, so a
    segment is closed once."""
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def counter(self, conn: Any, tenant_id: str, period: Period | str) -> int:
        """Billable sessions counted in a period (or under a counter's key, e.g. the trial's)."""
        key = period if isinstance(period, str) else period.key
        value = conn.execute(select(usage_counters.c.billable_sessions).where(
            usage_counters.c.tenant_id == tenant_id, usage_counters.c.period == key)).scalar_one_or_none()
        return value or 0

    def segments(self, conn: Any, tenant_id: str, period: Period, plan: Plan) -> list[Segment]:
        """The period's segments in time order. A period with none stored (begun before segments were
        kept) is one segment of `plan` from its start."""
        s = segments.c
        rows = conn.execute(select(segments).where(s.tenant_id == tenant_id, s.period_start == period.start)
                            .order_by(s.start_at)).mappings().all()
        if not rows:
            return [ledger.opened(period, plan, period.start, 0)]
        return [self._segment(r, period, plan) for r in rows]

    def closed_by(self, conn: Any, tenant_id: str, invoice_id: str) -> list[Segment]:
        """The segments an invoice closed, in time order (of plans still in the catalog)."""
        s = segments.c
        rows = conn.execute(select(segments).where(s.tenant_id == tenant_id, s.closed_by == invoice_id)
                            .order_by(s.start_at)).mappings().all()
        return [self._segment(r, Period(r["period_start"], r["period_end"], 0), None) for r in rows
                if self.catalog.get(r["plan_id"]) is not None]

    def _segment(self, r: Mapping[str, Any], period: Period, plan: Plan | None) -> Segment:
        found = self.catalog.get(r["plan_id"]) or plan
        assert found is not None
        return Segment(period, found, r["start_at"], r["units_at_start"], r["end_at"], r["units"], r["closed_by"])

    def running(self, conn: Any, tenant_id: str, period: Period, plan: Plan) -> Segment:
        """The period's segment that has not ended."""
        open_ = [seg for seg in self.segments(conn, tenant_id, period, plan) if seg.end is None]
        return open_[-1] if open_ else ledger.opened(period, plan, period.start, 0)

    def put(self, conn: Any, tenant_id: str, seg: Segment) -> None:
        s = segments.c
        values = {"period_start": seg.period.start, "period_end": seg.period.end, "plan_id": seg.plan.id,
                  "units_at_start": seg.units_at_start, "end_at": seg.end, "units": seg.units,
                  "closed_by": seg.closed_by}
        done = conn.execute(update(segments).where(s.tenant_id == tenant_id, s.start_at == seg.start,
                                                   s.closed_by.is_(None)).values(**values)).rowcount
        if not done:
            exists = conn.execute(select(s.closed_by).where(s.tenant_id == tenant_id, s.start_at == seg.start)).first()
            if exists is not None:
                raise RuntimeError(f"segment {tenant_id}/{seg.start.isoformat()} is closed already by {exists[0]}")
            conn.execute(insert(segments).values(tenant_id=tenant_id, start_at=seg.start, **values))

    def close(self, conn: Any, tenant_id: str, seg: Segment, invoice_id: str) -> bool:
        """Close a segment by `invoice_id` unless it is closed already (a second delivery of the
        same renewal); whether this closed it."""
        s = segments.c
        exists = conn.execute(select(s.closed_by).where(s.tenant_id == tenant_id, s.start_at == seg.start)).first()
        if exists is not None and exists[0] is not None:
            return False
        self.put(conn, tenant_id, seg.closed(invoice_id))
        return True

    def credits(self, conn: Any, tenant_id: str) -> dict[str, int]:
        c = credit_balances.c
        return {cur: amount
                for cur, amount in conn.execute(select(c.currency, c.amount).where(c.tenant_id == tenant_id))
                if amount}

    def put_credits(self, conn: Any, tenant_id: str, balances: Mapping[str, int]) -> None:
        c = credit_balances.c
        conn.execute(delete(credit_balances).where(c.tenant_id == tenant_id))
        rows = [{"tenant_id": tenant_id, "currency": cur, "amount": amount}
                for cur, amount in balances.items() if amount]
        if rows:
            conn.execute(insert(credit_balances), rows)

    def balances_due(self, conn: Any, tenant_id: str) -> list[Money]:
        c = invoices.c
        # An upgrade's invoice is owed only once paid: until then it is the change's, not a debt.
        return ledger.balances_due(conn.execute(select(c.currency, c.total).where(
            c.tenant_id == tenant_id, c.status == "open", c.change_plan_id.is_(None)).order_by(c.created_at)).all())


def amounts_text(owed: list[Money]) -> str:
    """Amounts as people read them, for messages: "$109.00 and ¥25,000"."""
    return " and ".join(format_currency(m.amount / 10 ** get_currency_precision(m.currency), m.currency, locale="en")
                        for m in owed)
