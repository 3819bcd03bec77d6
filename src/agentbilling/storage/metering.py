"""The hot path: admitting sessions and counting units on raw driver connections, one transaction each.

The ORM stays off this path. Each admission is one short transaction: read the subscription,
record the session (or find it, for a replay), and count its first unit with a conditional
upsert that refuses once the counter has reached its cap. The upsert is what makes admission
atomic: on PostgreSQL the row lock serialises concurrent increments and the WHERE is checked
against the latest row; on SQLite the write lock is taken at BEGIN.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agentbilling.domain.errors import NotFound, SessionIdReused
from agentbilling.domain.gate import Refusal
from agentbilling.domain.metering import Direction, Sender, Session
from agentbilling.domain.plans import Catalog
from agentbilling.domain.subscription import Standing, Status, Subscription, standing
from agentbilling.storage.db import Database
from agentbilling.storage.rows import (
    SESSION_COLUMNS,
    SUBSCRIPTION_COLUMNS,
    same,
    session_from_row,
    subscription_from_row,
)
from agentbilling.storage.types import from_sqlite_text, sqlite_text

NO_CAP = 2**62
STANDINGS_KEPT = 10_000  # tenants whose standing is kept between admissions


@dataclass(frozen=True, slots=True)
class OpenResult:
    session: Session | None
    replay: bool = False
    refusal: Refusal | None = None


class _Refused(Exception):
    """Unwinds (and so rolls back) an admission the gate refused."""

    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal


def _window(st: Standing) -> tuple[datetime | None, datetime | None]:
    """The moments over which a subscription's standing stays the same: [start, end), None unbounded.

    `standing` depends on `now` only through the paid period that contains it, or on the trial
    through whether its last day has passed.
    """
    if st.period is not None:
        return st.period.start, st.period.end
    assert st.trial is not None, "a standing without a period is the trial's"
    if st.status is Status.TRIALING:
        return None, st.trial.ends_at
    return st.trial.ends_at, None


class _WriteTransaction:
    """One read-write transaction on a pooled raw connection: committed on success, else rolled back.

    A plain class rather than a generator context manager: this wraps every admission.
    """

    __slots__ = ("db", "begin", "conn")

    def __init__(self, db: Database, begin: str | None) -> None:
        self.db = db
        self.begin = begin

    def __enter__(self) -> Any:
        self.db.write_lock.__enter__()
        try:
            self.conn = self.db.raw.take()
            cur = self.conn.cursor()
            if self.begin:
                cur.execute(self.begin)
            return cur
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        conn = getattr(self, "conn", None)
        try:
            if conn is None:
                return
            if exc_type is None:
                try:
                    conn.commit()
                except BaseException:
                    self._roll_back(conn)
                    raise
                self.db.raw.give_back(conn)
            else:
                self._roll_back(conn)
        finally:
            self.db.write_lock.__exit__(None, None, None)

    def _roll_back(self, conn: Any) -> None:
        try:
            conn.rollback()
        except Exception:
            self.db.raw.discard(conn)  # a connection that cannot roll back is not reused
        else:
            self.db.raw.give_back(conn)


class MeteringStore:
    def __init__(self, db: Database, catalog: Catalog, *, billing_enabled: bool = True) -> None:
        self.db = db
        self.catalog = catalog
        self.billing_enabled = billing_enabled
        # tenant -> (subscription row, its standing, the window it holds for): parsing the row and
        # deriving the standing cost more than the admission's SQL on SQLite, and change monthly.
        self._standings: dict[str, tuple[Any, Standing, datetime | None, datetime | None]] = {}
        sqlite = db.is_sqlite
        self._begin = "BEGIN IMMEDIATE" if sqlite else None
        self._to_db: Callable[[datetime], Any] = sqlite_text if sqlite else same
        self._from_db: Callable[[Any], datetime | None] = from_sqlite_text if sqlite else same
        q = (lambda s: s) if sqlite else (lambda s: re.sub(r":(\w+)", r"%(\1)s", s))
        lock = "" if sqlite else " FOR UPDATE"
        cols = ", ".join(SESSION_COLUMNS)
        self.sql_subscription = q(
            f"SELECT {', '.join(SUBSCRIPTION_COLUMNS)} FROM subscriptions WHERE tenant_id = :t"
        )
        insert_session = (
            f"INSERT INTO sessions (tenant_id, {cols}) VALUES (:t, :id, :agent, :dir, :ao, :now, :now, NULL, NULL, :units)"
            " ON CONFLICT (tenant_id, id) DO NOTHING"
        )
        self.sql_insert_session = q(insert_session)
        # PostgreSQL: record the session and count it in one statement, one round trip (the count
        # happens only if the session row is new); SQLite has no INSERT inside WITH.
        self.sql_admit: str | None = None if sqlite else q(
            f"WITH s AS ({insert_session} RETURNING 1),"
            " c AS (INSERT INTO usage_counters (tenant_id, period, billable_sessions) SELECT :t, :c, 1 FROM s"
            " ON CONFLICT (tenant_id, period) DO UPDATE SET billable_sessions = usage_counters.billable_sessions + 1"
            " WHERE usage_counters.billable_sessions < :cap RETURNING 1)"
            " SELECT EXISTS (SELECT 1 FROM s), EXISTS (SELECT 1 FROM c)"
        )
        self.sql_session = q(f"SELECT {cols} FROM sessions WHERE tenant_id = :t AND id = :id")
        self.sql_session_for_update = self.sql_session + lock
        self.sql_update_session = q(
            "UPDATE sessions SET last_activity_at = :last, answered_at = :answered, ended_at = :ended,"
            " billable_sessions = :units WHERE tenant_id = :t AND id = :id"
        )
        self.sql_count_capped = q(
            "INSERT INTO usage_counters (tenant_id, period, billable_sessions) VALUES (:t, :c, 1)"
            " ON CONFLICT (tenant_id, period) DO UPDATE"
            " SET billable_sessions = usage_counters.billable_sessions + 1"
            " WHERE usage_counters.billable_sessions < :cap RETURNING billable_sessions"
        )
        self.sql_count = q(
            "INSERT INTO usage_counters (tenant_id, period, billable_sessions) VALUES (:t, :c, :n)"
            " ON CONFLICT (tenant_id, period) DO UPDATE"
            " SET billable_sessions = usage_counters.billable_sessions + :n"
        )
        self.sql_key = q("SELECT tenant_id FROM api_keys WHERE key_hash = :h AND revoked_at IS NULL")
        # The key's tenant and its subscription in one read: one round trip fewer per admission.
        self.sql_key_subscription = q(
            f"SELECT k.tenant_id, {', '.join('s.' + c for c in SUBSCRIPTION_COLUMNS)}"
            " FROM api_keys k JOIN subscriptions s ON s.tenant_id = k.tenant_id"
            " WHERE k.key_hash = :h AND k.revoked_at IS NULL"
        )
        self.sql_used = q(
            "SELECT billable_sessions FROM usage_counters WHERE tenant_id = :t AND period = :c"
        )

    # -- transactions ------------------------------------------------------------------

    def _write(self) -> _WriteTransaction:
        return _WriteTransaction(self.db, self._begin)

    @contextlib.contextmanager
    def _read(self) -> Iterator[Any]:
        with self.db.raw.connection() as conn:
            cur = conn.cursor()
            try:
                yield cur
            finally:
                conn.rollback()

    # -- pieces ------------------------------------------------------------------------

    def _subscription_row(self, cur: Any, tenant_id: str) -> Any:
        cur.execute(self.sql_subscription, {"t": tenant_id})
        row = cur.fetchone()
        if row is None:
            raise NotFound(f"No tenant {tenant_id!r}.")
        return row

    def _subscription(self, cur: Any, tenant_id: str) -> Subscription:
        return subscription_from_row(tenant_id, self._subscription_row(cur, tenant_id), self.catalog, self._from_db)

    def _standing(self, cur: Any, tenant_id: str, now: datetime) -> Standing:
        """The standing at `now`, from the row read in this transaction; derived again only when the
        row changed or `now` left the window the last one holds for."""
        return self._standing_of(tenant_id, self._subscription_row(cur, tenant_id), now)

    def _standing_of(self, tenant_id: str, row: Any, now: datetime) -> Standing:
        kept = self._standings.get(tenant_id)
        if kept is not None and kept[0] == row:
            _, st, start, end = kept
            if (start is None or start <= now) and (end is None or now < end):
                return st
        st = standing(subscription_from_row(tenant_id, row, self.catalog, self._from_db), now,
                      billing_enabled=self.billing_enabled)
        if len(self._standings) >= STANDINGS_KEPT:
            self._standings.clear()
        self._standings[tenant_id] = (row, st, *_window(st))
        return st

    def _used(self, cur: Any, tenant_id: str, counter: str) -> int:
        cur.execute(self.sql_used, {"t": tenant_id, "c": counter})
        row = cur.fetchone()
        return row[0] if row else 0

    def _session(self, cur: Any, tenant_id: str, session_id: str, *, for_update: bool = False) -> Session:
        cur.execute(self.sql_session_for_update if for_update else self.sql_session, {"t": tenant_id, "id": session_id})
        row = cur.fetchone()
        if row is None:
            raise NotFound(f"No session {session_id!r}.")
        return session_from_row(row, self._from_db)

    def _save_session(self, cur: Any, tenant_id: str, s: Session) -> None:
        to_db = self._to_db
        cur.execute(
            self.sql_update_session,
            {
                "t": tenant_id,
                "id": s.id,
                "last": to_db(s.last_activity_at),
                "answered": to_db(s.answered_at) if s.answered_at else None,
                "ended": to_db(s.ended_at) if s.ended_at else None,
                "units": s.billable_sessions,
            },
        )

    # -- use cases ---------------------------------------------------------------------

    def open_session(
        self, tenant_id: str, session_id: str, agent_id: str, direction: Direction, now: datetime
    ) -> OpenResult:
        """Admit and count the first unit in one transaction, or refuse and change nothing."""
        try:
            with self._write() as cur:
                st = self._standing(cur, tenant_id, now)
                return self._admit(cur, tenant_id, st, session_id, agent_id, direction, now)
        except _Refused as refused:
            return OpenResult(None, refusal=refused.refusal)

    def open_session_for_key(
        self, key_hash: str, session_id: str, agent_id: str, direction: Direction, now: datetime
    ) -> OpenResult | None:
        """The agent runtime's admission: the API key's tenant (None: no such live key) and the
        admission, in the same transaction, so a request costs one connection checkout and commit."""
        try:
            with self._write() as cur:
                cur.execute(self.sql_key_subscription, {"h": key_hash})
                row = cur.fetchone()
                if row is None:
                    return None
                tenant_id = row[0]
                st = self._standing_of(tenant_id, tuple(row[1:]), now)
                return self._admit(cur, tenant_id, st, session_id, agent_id, direction, now)
        except _Refused as refused:
            return OpenResult(None, refusal=refused.refusal)

    def _admit(
        self, cur: Any, tenant_id: str, st: Standing, session_id: str, agent_id: str, direction: Direction,
        now: datetime,
    ) -> OpenResult:
        session = Session.open(
            id=session_id, agent_id=agent_id, direction=direction, answered_only=st.answered_only, now=now
        )
        params = {"t": tenant_id, "id": session_id, "agent": agent_id, "dir": direction.value,
                  "ao": st.answered_only, "now": self._to_db(now), "units": session.billable_sessions}
        if self.sql_admit is not None and st.closed is None and session.billable_sessions:
            cur.execute(self.sql_admit, {**params, "c": st.counter, "cap": NO_CAP if st.cap is None else st.cap})
            inserted, counted = cur.fetchone()
            if not inserted:
                return self._replay(cur, tenant_id, session_id, agent_id, direction)
            if not counted:
                raise _Refused(st.cap_refusal)
            return OpenResult(session)
        cur.execute(self.sql_insert_session, params)
        if cur.rowcount == 0:
            return self._replay(cur, tenant_id, session_id, agent_id, direction)
        if st.closed is not None:
            raise _Refused(st.closed)
        if session.billable_sessions:
            cur.execute(self.sql_count_capped, {"t": tenant_id, "c": st.counter, "cap": NO_CAP if st.cap is None else st.cap})
            if cur.fetchone() is None:
                raise _Refused(st.cap_refusal)
        else:
            # Answered only, outbound: admitted while below the limit, counted when answered.
            reason = st.refusal(self._used(cur, tenant_id, st.counter))
            if reason is not None:
                raise _Refused(reason)
        return OpenResult(session)

    def _replay(self, cur: Any, tenant_id: str, session_id: str, agent_id: str, direction: Direction) -> OpenResult:
        first = self._session(cur, tenant_id, session_id)
        if first.agent_id != agent_id or first.direction is not direction:
            raise SessionIdReused(f"Session {session_id!r} was opened with another agent or direction.")
        return OpenResult(first, replay=True)

    def record_message(self, tenant_id: str, session_id: str, sender: Sender, now: datetime) -> Session:
        """A message moves the latest activity; new units count in the period they appear in (R3)."""
        with self._write() as cur:
            before = self._session(cur, tenant_id, session_id, for_update=True)
            after = before.on_message(sender, now)
            self._save_session(cur, tenant_id, after)
            added = after.billable_sessions - before.billable_sessions
            if added:
                st = self._standing(cur, tenant_id, now)
                cur.execute(self.sql_count, {"t": tenant_id, "c": st.counter, "n": added})
            return after

    def end_session(self, tenant_id: str, session_id: str, now: datetime) -> Session:
        with self._write() as cur:
            before = self._session(cur, tenant_id, session_id, for_update=True)
            after = before.end(now)
            if after is not before:
                self._save_session(cur, tenant_id, after)
            return after

    def tenant_for_key_hash(self, key_hash: str) -> str | None:
        """Looked up on every agent request, so on the raw path too; revocation applies at once."""
        with self._read() as cur:
            cur.execute(self.sql_key, {"h": key_hash})
            row = cur.fetchone()
            return row[0] if row else None

    def get_session(self, tenant_id: str, session_id: str) -> Session:
        with self._read() as cur:
            return self._session(cur, tenant_id, session_id)

    def standing_and_usage(self, tenant_id: str, now: datetime) -> tuple[Subscription, Standing, int]:
        with self._read() as cur:
            sub = self._subscription(cur, tenant_id)
            st = standing(sub, now, billing_enabled=self.billing_enabled)
            return sub, st, self._used(cur, tenant_id, st.counter)
