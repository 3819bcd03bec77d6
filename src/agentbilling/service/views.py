"""Read models: the Billing tab's view and the cursor-paged list of sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from agentbilling.domain.card import banners, cards, session_limit_card
from agentbilling.service.cursors import newest_first
from agentbilling.domain.plans import Catalog
from agentbilling.service.records import Admission, BillingView, Page
from agentbilling.storage.db import Database
from agentbilling.storage.metering import MeteringStore
from agentbilling.storage.rows import SESSION_COLUMNS, same, session_from_row
from agentbilling.storage.tables import sessions


def billing_view(metering: MeteringStore, catalog: Catalog, tenant_id: str, now: datetime) -> BillingView:
    sub, st, used = metering.standing_and_usage(tenant_id, now)
    reason = st.refusal(used)
    return BillingView(
        cards=cards(sub, st, now, used),
        banners=banners(st, used),
        session_limit=session_limit_card(sub, st, used),
        plans=catalog.available_for(tenant_id),
        admission=Admission(accepting=reason is None, reason=reason),
    )


def list_sessions(db: Database, tenant_id: str, cursor: str | None, limit: int) -> Page:
    """Newest first, keyset-paged on (started_at, id)."""
    cols = [sessions.c[name] for name in SESSION_COLUMNS]
    data, nxt = newest_first(db, select(*cols).where(sessions.c.tenant_id == tenant_id), sessions.c.started_at,
                             sessions.c.id, cursor, limit, lambda r: session_from_row(r, same),
                             lambda s: (s.started_at, s.id))
    return Page(data, nxt)
