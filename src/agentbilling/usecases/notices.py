"""The notices of R14 as rows: recorded once per tenant and key (event notices with their change,
thresholds and times by each worker pass), listed newest first."""

from __future__ import annotations

import builtins
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agentbilling.delivery import claims
from agentbilling.delivery.email import Mailer, build
from agentbilling.delivery.webhooks_out import emit
from agentbilling.domain.notices import Notice, due_notices, notices_due_after
from agentbilling.domain.plans import Catalog
from agentbilling.domain.subscription import Status, Subscription, standing
from agentbilling.storage.db import Database
from agentbilling.storage.rows import SUBSCRIPTION_COLUMNS, subscription_from_row
from agentbilling.storage.tables import notices, subscriptions, tenants, usage_counters
from agentbilling.storage.types import UTCDateTime
from agentbilling.usecases.cursors import newest_first
from agentbilling.usecases.results import Backlog, NoticeRecord

log = logging.getLogger(__name__)

PENDING, SENT, FAILED = "pending", "sent", "failed"
CLAIM = timedelta(minutes=2)  # by default, a worker that claimed an email and died frees it after this
RETRY_AFTER = [timedelta(minutes=m) for m in (1, 5, 30, 120, 720, 1440)]  # then it is given up (failed)
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
        if conn.execute(stmt).rowcount:
            new += 1
            emit(conn, tenant_id, f"notice.{row['type']}", {"notice": {
                k: row[k] for k in ("id", "type", "title", "text", "created_at")}}, now)
    return new


class NoticeBook:
    def __init__(self, db: Database, catalog: Catalog, *, claim: timedelta = CLAIM,
                 billing_enabled: bool = True) -> None:
        self.db = db
        self.catalog = catalog
        self.billing_enabled = billing_enabled  # off: billing is handled elsewhere, so no reminders of ours
        self.claim_for = claim

    def _running(self, conn: Any) -> list[Subscription]:
        c = subscriptions.c
        rows = conn.execute(select(c.tenant_id, *[c[k] for k in SUBSCRIPTION_COLUMNS]).where(
            c.status.in_([Status.TRIALING.value, Status.ACTIVE.value]))).all()
        return [subscription_from_row(r[0], r[1:], self.catalog, lambda v: v) for r in rows]

    def detect(self, now: datetime) -> int:
        """Record the threshold and time-based notices due by `now`, for every running subscription.

        Three reads for all tenants (the subscriptions, their counters, which of the due keys
        exist), then a write only for a tenant with a notice not recorded yet: a notice stays due
        for days (7 days left, say), and the passes in between write nothing.
        """
        if not self.billing_enabled:
            return 0
        with self.db.read() as conn:
            subs = self._running(conn)
            counters = {s.tenant_id: standing(s, now).counter for s in subs}
            u = usage_counters.c
            used = dict(conn.execute(select(u.tenant_id, u.billable_sessions).where(
                tuple_(u.tenant_id, u.period).in_(list(counters.items())))).all()) if counters else {}
            due = {s.tenant_id: found for s in subs if (found := due_notices(s, used.get(s.tenant_id, 0), now))}
            pairs = [(t, n.key) for t, found in due.items() for n in found]
            n_ = notices.c
            known = set(conn.execute(select(n_.tenant_id, n_.key).where(
                tuple_(n_.tenant_id, n_.key).in_(pairs))).all()) if pairs else set()
        new = 0
        for tenant_id, found in due.items():
            fresh = [n for n in found if (tenant_id, n.key) not in known]
            if fresh:
                with self.db.write() as conn:
                    new += record(conn, tenant_id, fresh, now)  # unique keys: a racing worker adds nothing twice
        return new

    def next_due(self, after: datetime) -> datetime | None:
        """The next moment a time-based notice comes due, with no sessions on the way."""
        with self.db.read() as conn:
            subs = self._running(conn)
        return min((m for s in subs for m in notices_due_after(s, after)), default=None)

    def list(self, tenant_id: str, cursor: str | None, limit: int) -> tuple[list[NoticeRecord], str | None]:
        cols = [notices.c[f] for f in _FIELDS]
        return newest_first(self.db, select(*cols).where(notices.c.tenant_id == tenant_id), notices.c.created_at,
                            notices.c.id, cursor, limit, lambda r: NoticeRecord(*r), lambda n: (n.created_at, n.id))

    # -- email: claimed, sent, recorded ------------------------------------------------------

    def _due(self, wall: datetime) -> Any:
        c = notices.c
        return and_(c.email_status == PENDING, c.email_to.is_not(None),
                    or_(c.email_next_at.is_(None), c.email_next_at <= wall),
                    or_(c.email_claimed_until.is_(None), c.email_claimed_until < wall))

    def claim(self, wall: datetime, batch: int = 50) -> builtins.list[NoticeRecord]:  # `list` is the method above
        """Up to `batch` emails that are due, oldest first, for this worker alone until
        `claim_for` has passed (delivery/claims.py)."""
        c = notices.c
        claimed = claims.claim(self.db, notices, [c.tenant_id, c.id], self._due(wall), [c.created_at, c.id],
                               c.email_claimed_until, wall + self.claim_for, batch)
        if not claimed:
            return []
        with self.db.read() as conn:
            rows = conn.execute(select(*[c[f] for f in _FIELDS])
                                .where(or_(*(and_(c.tenant_id == t, c.id == i) for t, i in claimed)))
                                .order_by(c.created_at, c.id)).all()
        return [NoticeRecord(*r) for r in rows]

    def deliver(self, mailer: Mailer, wall: Callable[[], datetime], *, sender: str, link: str | None,
                batch: int = 50) -> int:
        """Send the emails that are due, batch after batch; how many went out.

        An email is marked sent after the server took it. If the process dies in between, the
        claim lapses and it is sent again (the same Message-ID): at least once, never lost; the
        other order (mark, then send) would lose it instead. The outbox folder writes the same
        file again, so there it is exactly once.
        """
        sent = 0
        while claimed := self.claim(wall(), batch):
            names = self._tenant_names({n.tenant_id for n in claimed})
            for n in claimed:
                sent += self._send_one(mailer, n, wall, sender=sender, tenant_name=names.get(n.tenant_id, ""),
                                       link=link)
        return sent

    def _tenant_names(self, ids: set[str]) -> dict[str, str]:
        with self.db.read() as conn:
            return dict(conn.execute(select(tenants.c.id, tenants.c.name).where(tenants.c.id.in_(ids))).all())

    def _send_one(self, mailer: Mailer, n: NoticeRecord, wall: Callable[[], datetime], *, sender: str,
                  tenant_name: str, link: str | None) -> int:
        c = notices.c
        mine = and_(c.tenant_id == n.tenant_id, c.id == n.id, c.email_status == PENDING)
        try:
            mailer.send(build(n, sender=sender, tenant_name=tenant_name, link=link))
        except Exception as exc:  # any failure to hand it over: try again later, up to the last retry
            with self.db.write() as conn:
                attempts = (conn.execute(select(c.email_attempts).where(mine)).scalar() or 0) + 1
                gave_up = attempts > len(RETRY_AFTER)
                conn.execute(update(notices).where(mine).values(
                    email_attempts=attempts, email_claimed_until=None, email_error=f"{type(exc).__name__}: {exc}"[:500],
                    email_status=FAILED if gave_up else PENDING,
                    email_next_at=None if gave_up else wall() + RETRY_AFTER[attempts - 1]))
            log.warning("notice %s (%s) to %s: email not sent (attempt %d): %s", n.id, n.type, n.email_to,
                        attempts, exc)
            return 0
        with self.db.write() as conn:
            conn.execute(update(notices).where(mine).values(
                email_status=SENT, email_sent_at=wall(), email_claimed_until=None,
                email_attempts=c.email_attempts + 1, email_error=None))
        log.info("notice %s (%s) emailed to %s", n.id, n.type, n.email_to)
        return 1

    def backlog(self, wall: datetime) -> tuple[int, Backlog]:
        """Emails due now and not sent, and since when they wait (see Backlog)."""
        c = notices.c
        due = and_(c.email_status == PENDING, c.email_to.is_not(None),
                   or_(c.email_next_at.is_(None), c.email_next_at <= wall))
        with self.db.read() as conn:
            count, retry, first = conn.execute(select(
                func.count(), func.min(c.email_next_at, type_=UTCDateTime()),
                func.min(case((c.email_next_at.is_(None), c.created_at)), type_=UTCDateTime())).where(due)).one()
        return count or 0, Backlog(retry, first)
