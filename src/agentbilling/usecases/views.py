"""Read models: the Billing tab's view, its usage chart and the cursor-paged list of sessions."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from sqlalchemy import select

from agentbilling.domain.card import Badge, Banner, banners, cards, paid_plan_running, session_limit_card
from agentbilling.domain.money import Money
from agentbilling.domain.plans import Catalog
from agentbilling.domain.usage import LOOKBACK, DayUsage, chart_window, units_by_day
from agentbilling.storage.db import Database
from agentbilling.storage.gate.metering import MeteringStore
from agentbilling.storage.repositories.ledger import amounts_text
from agentbilling.storage.rows import SESSION_COLUMNS, same, session_from_row
from agentbilling.storage.tables import sessions
from agentbilling.usecases.cursors import newest_first
from agentbilling.usecases.results import Admission, BillingView, Page

BALANCE_DUE = "Balance due"


def billing_view(metering: MeteringStore, catalog: Catalog, tenant_id: str, now: datetime) -> BillingView:
    sub, st, used = metering.standing_and_usage(tenant_id, now)
    reason = st.refusal(used)
    return BillingView(
        cards=cards(sub, st, now, used),
        banners=banners(st, used),
        session_limit=session_limit_card(sub, st, used),
        plans=catalog.available_for(tenant_id),
        admission=Admission(accepting=reason is None, reason=reason),
        offline=sub.offline and sub.paid,
        paid_plan_running=paid_plan_running(sub, st, used),
    )


def with_balances(view: BillingView, owed: list[Money], credits: dict[str, int]) -> BillingView:
    """The view with what is owed and the credit held. What is owed outside a payment issue (whose
    own banner says how to pay) gets a banner saying how to settle it."""
    banners = list(view.banners)
    if owed and not any(card.badge is Badge.PAYMENT_ISSUE for card in view.cards):
        banners.append(Banner(BALANCE_DUE, f"{amounts_text(owed)} is still owed from an earlier invoice. Click "
                                           "Manage on your subscription card to settle it in the billing portal."))
    return dataclasses.replace(view, banners=banners, balance_due=owed[0] if owed else None,
                               credit_balances=tuple(Money(v, k) for k, v in sorted(credits.items())))


def list_sessions(db: Database, tenant_id: str, cursor: str | None, limit: int) -> Page:
    """Newest first, keyset-paged on (started_at, id)."""
    cols = [sessions.c[name] for name in SESSION_COLUMNS]
    data, nxt = newest_first(db, select(*cols).where(sessions.c.tenant_id == tenant_id), sessions.c.started_at,
                             sessions.c.id, cursor, limit, lambda r: session_from_row(r, same),
                             lambda s: (s.started_at, s.id))
    return Page(data, nxt)


def usage_by_day(db: Database, metering: MeteringStore, tenant_id: str, now: datetime) -> list[DayUsage]:
    """Billable sessions per day of what the Sessions count covers (the period, or the trial).

    It reads the sessions that were active in it: the page's cost grows with one period's
    sessions, never with the whole history (they are found through the started_at index).
    """
    _, st, _ = metering.standing_and_usage(tenant_id, now)
    since, until, end = chart_window(st, now)
    cols = [sessions.c[name] for name in SESSION_COLUMNS]
    query = select(*cols).where(
        sessions.c.tenant_id == tenant_id,
        sessions.c.started_at >= since - LOOKBACK,
        sessions.c.started_at <= until,
        sessions.c.last_activity_at >= since,
    )
    with db.read() as conn:
        found = [session_from_row(r, same) for r in conn.execute(query)]
    return units_by_day(found, since, until, end)
