"""The notices of R14 as rows: recorded once per tenant and key, listed newest first.

Event notices are recorded in the transaction that writes the change they tell of
(`Lifecycle._save`); threshold and time-based ones by each worker pass (`detect`), from the
stored state and the clock. Either way the unique (tenant, key) makes a notice exist once, so a
pass run twice, or by two workers at once, records nothing twice.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agentbilling.domain.notices import Notice, due_notices, notices_due_after
from agentbilling.domain.subscription import Status
from agentbilling.service.cursors import newest_first
from agentbilling.service.records import NoticeRecord
from agentbilling.storage.db import Database
from agentbilling.storage.metering import MeteringStore
from agentbilling.storage.tables import notices, subscriptions, tenants

PENDING, SENT, FAILED = "pending", "sent", "failed"
_FIELDS = ("id", "tenant_id", "type", "key", "title", "text", "created_at", "email_to", "email_status",
           "email_sent_at")


def notice_id() -> str:
    """Unique, and in the order made (within a process): notices made at one moment list in order."""
    return f"ntc_{time.time_ns():016x}{secrets.token_hex(3)}"


def record(conn: Any, tenant_id: str, found: Iterable[Notice], now: datetime) -> int:
    """Store the notices not stored before (by key); how many were new."""
    rows = [{"tenant_id": tenant_id, "id": notice_id(), "type": n.type.value, "key": n.key,
             "title": n.title, "text": n.text, "created_at": now, "email_status": PENDING} for n in found]
    if not rows:
        return 0
    email = conn.execute(select(tenants.c.billing_email).where(tenants.c.id == tenant_id)).scalar()
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    new = 0
    for row in rows:
        stmt = insert(notices).values(**row, email_to=email).on_conflict_do_nothing(
            index_elements=["tenant_id", "key"])
        new += conn.execute(stmt).rowcount or 0
    return new


class NoticeBook:
    def __init__(self, db: Database, metering: MeteringStore) -> None:
        self.db = db
        self.metering = metering

    def _running(self) -> list[str]:
        c = subscriptions.c
        with self.db.read() as conn:
            return list(conn.execute(select(c.tenant_id).where(
                c.status.in_([Status.TRIALING.value, Status.ACTIVE.value]))).scalars())

    def detect(self, now: datetime) -> int:
        """Record the threshold and time-based notices due by `now`, for every running subscription."""
        new = 0
        for tenant_id in self._running():
            sub, _, used = self.metering.standing_and_usage(tenant_id, now)
            found = due_notices(sub, used, now)
            if found:
                with self.db.write() as conn:
                    new += record(conn, tenant_id, found, now)
        return new

    def next_due(self, after: datetime) -> datetime | None:
        """The next moment a time-based notice comes due, with no sessions on the way."""
        moments = []
        for tenant_id in self._running():
            sub, _, _ = self.metering.standing_and_usage(tenant_id, after)
            moments.extend(notices_due_after(sub, after))
        return min(moments, default=None)

    def list(self, tenant_id: str, cursor: str | None, limit: int) -> tuple[list[NoticeRecord], str | None]:
        cols = [notices.c[f] for f in _FIELDS]
        return newest_first(self.db, select(*cols).where(notices.c.tenant_id == tenant_id), notices.c.created_at,
                            notices.c.id, cursor, limit, lambda r: NoticeRecord(*r), lambda n: (n.created_at, n.id))
