"""A period's segments split where its plan changes, so that each plan's extras are billed once (R8a)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from agentbilling.domain import ledger
from agentbilling.domain.periods import Period
from agentbilling.domain.plans import Plan
from agentbilling.usecases.paid_plans import PaidPlans


def split(billing: PaidPlans, conn: Any, tenant_id: str, period: Period, old: Plan, new: Plan, moment: datetime,
          counter: int, closed_by: str | None) -> None:
    """The period's running segment ends at `moment` (closed by `closed_by`, if given) and the
    new plan's begins. A segment begun at that same moment has no length: the new plan takes
    it over, with the units recognised in it."""
    running = billing.book.running(conn, tenant_id, period, old)
    if running.start == moment:
        billing.book.put(conn, tenant_id, ledger.opened(period, new, moment, running.units_at_start))
        return
    ended = running.ended(moment, counter)
    billing.book.put(conn, tenant_id, ended.closed(closed_by) if closed_by else ended)
    billing.book.put(conn, tenant_id, ledger.opened(period, new, moment, counter))


def split_by_change(billing: PaidPlans, conn: Any, tenant_id: str, period: Period, old: Plan, new: Plan,
                    moment: datetime, counter: int, closed_by: str) -> None:
    """`split` for an immediate change the provider made (Stripe), whose extras went on its
    invoice as counted at the request (`counter`). The provider's webhook may have split the
    segments already (at the same moment, with the counter as it read it): then that split is
    set to this counter and the old segment closed, so its extras are billed once."""
    segs = billing.book.segments(conn, tenant_id, period, old)
    running = billing.book.running(conn, tenant_id, period, old)
    before = next((s for s in reversed(segs) if s.end == moment and s.plan.id == old.id), None)
    if running.plan.id == new.id and running.start == moment and before is not None:
        if before.closed_by is None:
            billing.book.put(conn, tenant_id, dataclasses.replace(
                before, units=max(0, counter - before.units_at_start), closed_by=closed_by))
            billing.book.put(conn, tenant_id, dataclasses.replace(running, units_at_start=counter))
        return
    split(billing, conn, tenant_id, period, old, new, moment, counter, closed_by)
