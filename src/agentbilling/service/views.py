"""Read models: the Billing tab's view and the cursor-paged list of sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, select

from agentbilling.domain.card import banners, cards, session_limit_card
from agentbilling.domain.errors import InvalidInput
from agentbilling.service.cursors import decode_cursor, encode_cursor
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
    """Newest first, keyset-paged on (started_at, id) so a page costs the same at any depth."""
    if not 1 <= limit <= 100:
        raise InvalidInput("limit must be between 1 and 100.")
    cols = [sessions.c[name] for name in SESSION_COLUMNS]
    query = select(*cols).where(sessions.c.tenant_id == tenant_id)
    if cursor:
        started, sid = decode_cursor(cursor)
        query = query.where(or_(sessions.c.started_at < started,
                                and_(sessions.c.started_at == started, sessions.c.id < sid)))
    query = query.order_by(sessions.c.started_at.desc(), sessions.c.id.desc()).limit(limit + 1)
    with db.read() as conn:
        rows = conn.execute(query).all()
    data = [session_from_row(r, same) for r in rows[:limit]]
    more = len(rows) > limit
    return Page(data, encode_cursor(data[-1].started_at, data[-1].id) if more else None)
