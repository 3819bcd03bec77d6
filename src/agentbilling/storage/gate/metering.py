"""The hot path: admitting sessions and counting units on raw driver connections.

The ORM stays off this path. An admission reads the subscription, records the session (or
finds it, for a replay), and counts its first unit with a conditional upsert that refuses once
the counter has reached its cap; a refusal changes nothing. The upsert is what makes admission
atomic: on PostgreSQL the counter's row lock serialises concurrent increments and the WHERE is
checked against the latest row; on SQLite the write lock is taken at BEGIN.

Three ways through, all with the same decisions:
- one admission, one transaction (`_admit`), for anything out of the ordinary;
- on PostgreSQL, for a tenant whose standing is kept, new ids (one, or a batch) in one
  statement on an autocommit connection (`_pg_admit_batch`): one round trip, guarded by the key
  and the subscription's revision; over HTTP it runs on the event loop
  (`open_sessions_kept_async`);
- several admissions under one API key in one transaction and one commit
  (`open_sessions_for_key`, group commit), which the HTTP API uses for requests that arrive
  together.
Every path that takes both the counter's row and a session's id takes the counter first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from agentbilling.domain.errors import DomainError, NotFound, SessionIdReused
from agentbilling.domain.gate import Refusal
from agentbilling.domain.metering import Direction, Sender, Session
from agentbilling.domain.plans import Catalog
from agentbilling.domain.subscription import Standing, Subscription, at, standing
from agentbilling.storage.db import Database, DatabaseUnavailable
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


class AdmissionRequest(NamedTuple):
    """One request to open a session, its fields already validated."""

    session_id: str
    agent_id: str
    direction: Direction


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
    `standing` works them out: up to the next period start, scheduled change, cancellation's end,
    grace period's end or lapse, or the trial's last moment."""
    return st.since, st.until


@dataclass(frozen=True, slots=True)
class _Decided:
    results: list[OpenResult | DomainError | None]
    admitted: list[Session]  # to record, in order
    count: int | None  # the counter's new value; None: unchanged


def _decide_in_order(
    st: Standing, requests: Sequence[AdmissionRequest], known: list[Session], used: int, now: datetime
) -> _Decided:
    """The decisions `_admit` makes, one request after another, from the counter's value and the
    sessions of the batch's ids that exist: a known id is a replay (or a reused id), then the gate
    decides on the count so far."""
    by_id = {s.id: s for s in known}
    results: list[OpenResult | DomainError | None] = []
    admitted: list[Session] = []
    before = used
    for r in requests:
        first = by_id.get(r.session_id)
        if first is not None:
            results.append(_replay_of(first, r.agent_id, r.direction))
            continue
        reason = st.refusal(used)
        if reason is not None:
            results.append(OpenResult(None, refusal=reason))
            continue
        session = Session.open(id=r.session_id, agent_id=r.agent_id, direction=r.direction,
                               answered_only=st.answered_only, now=now)
        used += session.billable_sessions
        by_id[session.id] = session
        admitted.append(session)
        results.append(OpenResult(session))
    return _Decided(results, admitted, used if used != before else None)


def _record_params(tenant_id: str, revision: int, st: Standing, decided: _Decided, now: datetime) -> dict[str, Any]:
    sessions = decided.admitted
    return {
        "t": tenant_id, "rev": revision, "c": st.counter, "n": decided.count, "now": now, "ao": st.answered_only,
        "ids": [s.id for s in sessions], "agents": [s.agent_id for s in sessions],
        "dirs": [s.direction.value for s in sessions], "units": [s.billable_sessions for s in sessions],
    }


def _pg_admit(cols: str) -> str:
    """PostgreSQL's admission of a new session as one statement, inside the transaction that read
    the standing: count its first unit under the cap and, only if that counted, record the
    session; returns whether it was admitted. The caller holds the counter row already and read
    the standing after it took it (`_locked`), so nothing it read can have changed; the row is
    marked as checked under the standing's revision, for `_pg_admit_batch`.

    The counter row comes first, as in every path that takes both locks (`_admit_in_order` too),
    so that no two admissions wait on each other in a cycle. The statement cannot tell a refusal
    from a replay (a count refused after waiting on the counter row may be the same id admitted
    meanwhile, which its snapshot does not show); the caller asks. A race on the same id fails
    the insert, which undoes the count.
    """
    return (
        "WITH c AS (INSERT INTO usage_counters (tenant_id, period, billable_sessions, checked_revision)"
        " SELECT CAST(:t AS VARCHAR), :c, 1, CAST(:rev AS bigint) WHERE :cap > 0"
        " AND NOT EXISTS (SELECT 1 FROM sessions WHERE tenant_id = :t AND id = :id)"
        " ON CONFLICT (tenant_id, period) DO UPDATE SET billable_sessions = usage_counters.billable_sessions + 1,"
        " checked_revision = CAST(:rev AS bigint)"
        " WHERE usage_counters.billable_sessions < :cap RETURNING 1),"
        f" s AS (INSERT INTO sessions (tenant_id, {cols})"
        " SELECT :t, :id, :agent, :dir, :ao, :now, :now, NULL, NULL, :units FROM c RETURNING 1)"
        " SELECT EXISTS (SELECT 1 FROM s)"
    )


class _KeptBatch(NamedTuple):
    sessions: list[Session]
    sql: str
    params: dict[str, Any]

    def answers(self, recorded: int) -> list[OpenResult | DomainError | None] | None:
        """All admitted, or None: nothing was recorded."""
        if recorded != len(self.sessions):
            assert recorded == 0, recorded
            return None
        return [OpenResult(s) for s in self.sessions]


def _pg_admit_batch(cols: str, *, key: bool = True) -> str:
    """PostgreSQL's admission of new sessions (one or several) as one statement that is a
    transaction of its own, for a tenant whose standing the caller keeps: it goes on only if the
    subscription is still at the kept revision (and, with `key`, the API key is live), counts all
    their first units under the cap and, only if that counted, records them all; returns how many
    it recorded (0 or all). Anything out of the ordinary (an id that exists, a count that would
    pass the cap, a key or subscription that changed) counts and records nothing, and the caller
    decides the batch request by request in a transaction (`_admit_in_order`). An id that exists
    fails the insert, which undoes the count: the statement looks nothing up but by a unique key,
    so a plan made once, while the tables were small, stays right however they grow (a check
    for the ids beforehand, `id = ANY(...)`, does not: measured, its prepared plan scans the
    tenant's sessions, slower with every one stored).

    The key and the revision are read in the statement's snapshot, taken before it waits for the
    counter row; what it reads of the counter row is its latest version, after the wait. So the
    count goes on only while the row's `checked_revision` is the kept revision: a writer that
    changed what admission depends on clears it in its transaction (a trigger: migration 0007), and an
    admission that waited behind that writer counts nothing here and goes to the transaction
    path, which reads everything again after it holds the row."""
    guard = ("k AS (SELECT 1 FROM api_keys WHERE key_hash = :h AND revoked_at IS NULL AND tenant_id = :t), "
             if key else "")
    return (
        f"WITH {guard}r AS (SELECT 1 FROM subscriptions WHERE tenant_id = :t AND revision = :rev),"
        " c AS (INSERT INTO usage_counters (tenant_id, period, billable_sessions, checked_revision)"
        f" SELECT CAST(:t AS VARCHAR), :c, :n, CAST(:rev AS bigint) FROM {'k, r' if key else 'r'} WHERE :n <= :cap"
        " ON CONFLICT (tenant_id, period) DO UPDATE SET billable_sessions = usage_counters.billable_sessions + :n"
        " WHERE usage_counters.billable_sessions <= :cap - :n"
        " AND usage_counters.checked_revision = CAST(:rev AS bigint) RETURNING 1),"
        f" s AS (INSERT INTO sessions (tenant_id, {cols})"
        " SELECT :t, u.id, u.agent, u.dir, :ao, :now, :now, NULL, NULL, 1"
        " FROM c, unnest(CAST(:ids AS text[]), CAST(:agents AS text[]), CAST(:dirs AS text[])) AS u(id, agent, dir)"
        " RETURNING 1)"
        " SELECT count(*) FROM s"
    )


def _replay_of(first: Session, agent_id: str, direction: Direction) -> OpenResult | SessionIdReused:
    """The same id again: the first answer, or an error if it came with another agent or direction."""
    if first.agent_id != agent_id or first.direction is not direction:
        return SessionIdReused(f"Session {first.id!r} was opened with another agent or direction.")
    return OpenResult(first, replay=True)


def _lost_race(sqlite: bool) -> tuple[type[Exception], ...]:
    """What a transaction that lost a race raises, having kept nothing, so that it may run again:
    the same id recorded meanwhile and, on PostgreSQL, a deadlock the server broke by aborting it
    (a message locks its session before the counter; admissions take the counter first)."""
    if sqlite:
        return (sqlite3.IntegrityError,)
    import psycopg.errors

    return (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected)


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
        self._standings: dict[str, tuple[int, Standing, datetime | None, datetime | None]] = {}
        # key hash -> its tenant (a key never moves; whether it is still live is asked every time)
        self._key_tenants: dict[str, str] = {}
        sqlite = db.is_sqlite
        # PostgreSQL's raw connections are in autocommit, so one statement is one transaction;
        # a transaction of several statements begins explicitly.
        self._begin = "BEGIN IMMEDIATE" if sqlite else "BEGIN"
        self._to_db: Callable[[datetime], Any] = sqlite_text if sqlite else same
        self._from_db: Callable[[Any], datetime | None] = from_sqlite_text if sqlite else same
        self._lost_race: tuple[type[Exception], ...] = _lost_race(sqlite)
        q = (lambda s: s) if sqlite else (lambda s: re.sub(r":(\w+)", r"%(\1)s", s))
        lock = "" if sqlite else " FOR UPDATE"
        cols = ", ".join(SESSION_COLUMNS)
        self.sql_subscription = q(
            f"SELECT revision, {', '.join(SUBSCRIPTION_COLUMNS)} FROM subscriptions WHERE tenant_id = :t"
        )
        insert_session = (
            f"INSERT INTO sessions (tenant_id, {cols}) VALUES (:t, :id, :agent, :dir, :ao, :now, :now, NULL, NULL, :units)"
            " ON CONFLICT (tenant_id, id) DO NOTHING"
        )
        self.sql_insert_session = q(insert_session)
        # PostgreSQL: count the first unit and record the session in one statement, one round trip
        # (SQLite has no INSERT inside WITH). See `_pg_admit`.
        self.sql_admit: str | None = None if sqlite else q(_pg_admit(cols))
        # For a tenant whose standing is kept, new ids in one statement that is a transaction of its
        # own, on the gate's autocommit connections (`Database.gate`, `async_pool`): `_pg_admit_batch`.
        self.sql_admit_kept: str | None = None if sqlite else q(_pg_admit_batch(cols, key=False))
        self.sql_admit_kept_key: str | None = None if sqlite else q(_pg_admit_batch(cols))
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
        # The revision alone, first: while the standing kept for it holds, that is all an admission
        # needs of the subscription (the whole row is read only when it changed).
        self.sql_revision = q("SELECT revision FROM subscriptions WHERE tenant_id = :t")
        self.sql_key_revision = q(
            "SELECT k.tenant_id, s.revision FROM api_keys k JOIN subscriptions s ON s.tenant_id = k.tenant_id"
            " WHERE k.key_hash = :h AND k.revoked_at IS NULL"
        )
        self.sql_used = q(
            "SELECT billable_sessions FROM usage_counters WHERE tenant_id = :t AND period = :c"
        )
        # Several admissions in one transaction (`open_sessions_for_key`): take the counter's row
        # (and so its lock, on PostgreSQL) before anything else, read which ids exist, then write
        # the admitted sessions and the new count.
        self.sql_lock_counter = (
            "INSERT INTO usage_counters (tenant_id, period, billable_sessions) VALUES (:t, :c, 0)"
            " ON CONFLICT (tenant_id, period) DO UPDATE SET billable_sessions = usage_counters.billable_sessions"
            " RETURNING billable_sessions"
        )
        self.sql_sessions_among = (
            f"SELECT {cols} FROM sessions WHERE tenant_id = :t AND id IN (SELECT value FROM json_each(:ids))"
        )
        self.sql_record_session = (
            f"INSERT INTO sessions (tenant_id, {cols}) VALUES (:t, :id, :agent, :dir, :ao, :now, :now, NULL, NULL, :units)"
        )
        self.sql_set_count = "UPDATE usage_counters SET billable_sessions = :n WHERE tenant_id = :t AND period = :c"
        # PostgreSQL, pipelined (statements sent together, one round trip): make sure the counter's
        # row exists, lock it with FOR UPDATE (no new row version, unlike a no-op upsert: the row is
        # updated once per batch, not twice), then read the ids that exist in a statement of its
        # own, whose snapshot, taken after the lock, shows every session counted by whoever held
        # it before.
        # Then the sessions (one INSERT from arrays) and the count (:n NULL: unchanged) in one statement.
        self.sql_ensure_counter_pg = q(
            "INSERT INTO usage_counters (tenant_id, period, billable_sessions) VALUES (:t, :c, 0)"
            " ON CONFLICT (tenant_id, period) DO NOTHING"
        )
        self.sql_lock_counter_pg = q(
            "SELECT billable_sessions FROM usage_counters WHERE tenant_id = :t AND period = :c FOR UPDATE"
        )
        self.sql_sessions_among_pg = q(f"SELECT {cols} FROM sessions WHERE tenant_id = :t AND id = ANY(:ids)")
        self.sql_record_sessions_and_count = q(
            f"WITH i AS (INSERT INTO sessions (tenant_id, {cols})"
            " SELECT :t, u.id, u.agent, u.dir, :ao, :now, :now, NULL, NULL, u.units"
            " FROM unnest(CAST(:ids AS text[]), CAST(:agents AS text[]), CAST(:dirs AS text[]),"
            " CAST(:units AS int[])) AS u(id, agent, dir, units) RETURNING 1)"
            " UPDATE usage_counters SET billable_sessions = COALESCE(CAST(:n AS bigint), billable_sessions),"
            " checked_revision = CAST(:rev AS bigint)"
            " WHERE tenant_id = :t AND period = :c"
        )

    # -- transactions ------------------------------------------------------------------

    def _write(self) -> _WriteTransaction:
        return _WriteTransaction(self.db, self._begin)

    @contextlib.contextmanager
    def _read(self) -> Iterator[Any]:
        with self.db.raw.connection() as conn:
            cur = conn.cursor()
            if not self.db.is_sqlite:
                cur.execute("BEGIN")  # one snapshot for the reads of the block
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
        return subscription_from_row(tenant_id, self._subscription_row(cur, tenant_id)[1:], self.catalog,
                                     self._from_db)

    def _standing(self, cur: Any, tenant_id: str, now: datetime) -> Standing:
        """The standing at `now`, from the row read in this transaction; derived again only when the
        row's revision changed or `now` left the window the last one holds for."""
        cur.execute(self.sql_revision, {"t": tenant_id})
        found = cur.fetchone()
        if found is not None:
            kept = self._kept_standing(tenant_id, now)
            if kept is not None and kept[0] == found[0]:
                return kept[1]
        row = self._subscription_row(cur, tenant_id)
        return self._standing_of(tenant_id, row[0], row[1:], now)

    def _standing_of(self, tenant_id: str, revision: int, row: Any, now: datetime) -> Standing:
        kept = self._kept_standing(tenant_id, now)
        if kept is not None and kept[0] == revision:
            return kept[1]
        st = standing(subscription_from_row(tenant_id, row, self.catalog, self._from_db), now,
                      billing_enabled=self.billing_enabled)
        if len(self._standings) >= STANDINGS_KEPT:
            self._standings.clear()
        self._standings[tenant_id] = (revision, st, *_window(st))
        return st

    def _read_standing(
        self, cur: Any, tenant_id: str | None, key_hash: str | None, now: datetime
    ) -> tuple[str, int, Standing] | None:
        """The tenant (the API key's, if given: None when it is not live), the subscription's
        revision and its standing, read now (the whole row only when the kept standing is stale)."""
        if key_hash is not None:
            cur.execute(self.sql_key_revision, {"h": key_hash})
            found = cur.fetchone()
            if found is None:
                self._key_tenants.pop(key_hash, None)
                return None
            tenant_id = self._remember_key(key_hash, found[0])
        else:
            assert tenant_id is not None
            cur.execute(self.sql_revision, {"t": tenant_id})
            found = (tenant_id, *row) if (row := cur.fetchone()) is not None else None
        if found is not None:
            kept = self._kept_standing(tenant_id, now)
            if kept is not None and kept[0] == found[1]:
                return tenant_id, kept[0], kept[1]
        row = self._subscription_row(cur, tenant_id)
        return tenant_id, row[0], self._standing_of(tenant_id, row[0], row[1:], now)

    def _locked(
        self, cur: Any, tenant_id: str | None, key_hash: str | None, now: datetime
    ) -> tuple[str, int, Standing] | None:
        """`_read_standing` in a write transaction, read after the transaction holds the counter row
        the standing counts in, so that no writer of the key or the subscription can commit between
        the read and the count (every such writer takes the tenant's counter rows: migration 0007's
        trigger).
        SQLite's transaction holds the write lock since BEGIN IMMEDIATE: one read is enough. On
        PostgreSQL the standing read first names the counter row to lock; read again after the lock,
        it is the one to decide on (if its counter moved meanwhile, that one is locked in turn)."""
        if self.db.is_sqlite:
            return self._read_standing(cur, tenant_id, key_hash, now)
        # The row to lock, from the kept standing if there is one (a round trip fewer): whatever
        # changed meanwhile is read after the lock.
        known = tenant_id if key_hash is None else self._key_tenants.get(key_hash)
        kept = self._kept_standing(known, now) if known is not None else None
        found = ((known, *kept) if known is not None and kept is not None
                 else self._read_standing(cur, tenant_id, key_hash, now))
        for _ in range(4):
            if found is None:
                return None
            counter = {"t": found[0], "c": found[2].counter}
            cur.execute(self.sql_ensure_counter_pg, counter)
            cur.execute(self.sql_lock_counter_pg, counter)
            cur.fetchone()
            again = self._read_standing(cur, found[0] if key_hash is None else None, key_hash, now)
            if again is None or again[2].counter == found[2].counter:
                return again
            found = again
        raise RuntimeError(f"The subscription of {found[0]!r} kept changing its period.")

    def _kept_standing(self, tenant_id: str, now: datetime) -> tuple[int, Standing] | None:
        """The standing kept for the tenant with the revision it was derived from, if it holds at `now`."""
        kept = self._standings.get(tenant_id)
        if kept is None:
            return None
        revision, st, start, end = kept
        if (start is None or start <= now) and (end is None or now < end):
            return revision, st
        return None

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
        kept = self._admit_kept(tenant_id, None, session_id, agent_id, direction, now)
        if kept is not None:
            return kept

        def admit(cur: Any) -> OpenResult:
            found = self._locked(cur, tenant_id, None, now)
            assert found is not None
            return self._admit(cur, tenant_id, found[1], found[2], session_id, agent_id, direction, now)

        result = self._in_transaction(admit)
        assert result is not None
        return result

    def open_session_for_key(
        self, key_hash: str, session_id: str, agent_id: str, direction: Direction, now: datetime
    ) -> OpenResult | None:
        """The agent runtime's admission: the API key's tenant (None: no such live key) and the
        admission, in the same transaction, so a request costs one connection checkout and commit."""
        kept = self._admit_kept(None, key_hash, session_id, agent_id, direction, now)
        if kept is not None:
            return kept

        def admit(cur: Any) -> OpenResult | None:
            found = self._locked(cur, None, key_hash, now)
            if found is None:
                return None
            tenant_id, revision, st = found
            return self._admit(cur, tenant_id, revision, st, session_id, agent_id, direction, now)

        return self._in_transaction(admit)

    def _in_transaction(self, admit: Callable[[Any], OpenResult | None]) -> OpenResult | None:
        """An admission in a write transaction; a refusal rolls it back. One that lost a race with
        the same id (PostgreSQL: its insert fails after its count, undoing both) runs again and
        finds the replay."""
        for attempt in (1, 2):
            try:
                with self._write() as cur:
                    return admit(cur)
            except _Refused as refused:
                return OpenResult(None, refusal=refused.refusal)
            except self._lost_race:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def open_sessions_for_key(
        self, key_hash: str, requests: Sequence[AdmissionRequest], now: datetime
    ) -> list[OpenResult | Exception | None]:
        """Admissions under one API key in one transaction and one commit (group commit): each
        request gets the answer `open_session_for_key` would give it (None: no live key; an error
        such as a reused id is returned in its place, not raised), as if they ran one after another in order.

        This is what lets a busy tenant go faster than one commit at a time: on PostgreSQL its
        counter row is locked until the commit is on disk, so admissions one per transaction
        cannot outrun the disk's flushes; a batch pays one flush for all of them. On PostgreSQL the
        batch is three round trips, pipelined: the key and the subscription; the counter (locked)
        and the ids that exist; the admitted sessions, the new count and the commit.
        """
        if len(requests) == 1:
            return [self._open_one(key_hash, requests[0], now)]
        kept = self._admit_kept_batch(None, key_hash, requests, now)
        if kept is not None:
            return kept
        try:
            with self._batch_transaction() as cur:
                found = self._locked(cur, None, key_hash, now)
                if found is None:
                    return [None] * len(requests)
                tenant_id, revision, st = found
                return self._admit_in_order(cur, tenant_id, revision, st, requests, now)
        except self._lost_race:
            # One of the ids was recorded meanwhile by an admission that does not take the counter
            # (an uncounted one): nothing of the batch was kept; each goes on its own.
            return [self._open_one(key_hash, r, now) for r in requests]

    @contextlib.contextmanager
    def _batch_transaction(self) -> Iterator[Any]:
        """`_write`, on PostgreSQL in pipeline mode: statements go out without waiting, and a round
        trip is paid only where a result is read, and at the commit."""
        if self.db.is_sqlite:
            with self._write() as cur:
                yield cur
            return
        with self.db.raw.connection() as conn:  # rolls back if anything below raises
            with conn.pipeline():
                cur = conn.cursor()
                cur.execute("BEGIN")
                yield cur
                cur.execute("COMMIT")

    def _open_one(self, key_hash: str, r: AdmissionRequest, now: datetime) -> OpenResult | Exception | None:
        """One request of a batch on its own; whatever it raises is its answer, so that one failing
        does not take the answers of those already committed before it."""
        try:
            return self.open_session_for_key(key_hash, r.session_id, r.agent_id, r.direction, now)
        except Exception as err:
            return err

    def _admit_in_order(
        self, cur: Any, tenant_id: str, revision: int, st: Standing, requests: Sequence[AdmissionRequest],
        now: datetime,
    ) -> list[OpenResult | DomainError | None]:
        ids = [r.session_id for r in requests]
        if self.db.is_sqlite:
            cur.execute(self.sql_lock_counter, {"t": tenant_id, "c": st.counter})
            used = cur.fetchone()[0]
            cur.execute(self.sql_sessions_among, {"t": tenant_id, "ids": json.dumps(ids)})
            rows = cur.fetchall()
        else:
            conn = cur.connection
            lock, find = conn.cursor(), conn.cursor()
            counter = {"t": tenant_id, "c": st.counter}
            conn.cursor().execute(self.sql_ensure_counter_pg, counter)
            lock.execute(self.sql_lock_counter_pg, counter)
            find.execute(self.sql_sessions_among_pg, {"t": tenant_id, "ids": ids})
            used, rows = lock.fetchone()[0], find.fetchall()
        decided = _decide_in_order(st, requests, [session_from_row(row, self._from_db) for row in rows], used, now)
        if decided.admitted:
            if self.db.is_sqlite:
                at = self._to_db(now)
                cur.executemany(self.sql_record_session, [
                    {"t": tenant_id, "id": s.id, "agent": s.agent_id, "dir": s.direction.value,
                     "ao": s.answered_only, "now": at, "units": s.billable_sessions} for s in decided.admitted
                ])
                if decided.count is not None:
                    cur.execute(self.sql_set_count, {"t": tenant_id, "c": st.counter, "n": decided.count})
            else:
                cur.execute(self.sql_record_sessions_and_count, _record_params(tenant_id, revision, st, decided, now))
        return decided.results

    def _remember_key(self, key_hash: str, tenant_id: str) -> str:
        if len(self._key_tenants) >= STANDINGS_KEPT:
            self._key_tenants.clear()
        self._key_tenants[key_hash] = tenant_id
        return tenant_id

    def _admit_kept(
        self, tenant_id: str | None, key_hash: str | None, session_id: str, agent_id: str, direction: Direction,
        now: datetime,
    ) -> OpenResult | None:
        """PostgreSQL's one-statement admission of one new id for a tenant (or an API key's) whose
        standing is kept: the admission, or None (nothing changed) for a transaction to decide."""
        answers = self._admit_kept_batch(tenant_id, key_hash, [AdmissionRequest(session_id, agent_id, direction)], now)
        if answers is None:
            return None
        (answer,) = answers
        assert isinstance(answer, OpenResult)
        return answer

    def _kept_batch(
        self, tenant_id: str | None, key_hash: str | None, requests: Sequence[AdmissionRequest], now: datetime
    ) -> _KeptBatch | None:
        """The one-statement admission of new ids (`_pg_admit_batch`) for the tenant, or the API
        key's, if it may decide them: the tenant's standing is kept (and the key's tenant known),
        and every request is a new id counted at once."""
        if self.sql_admit_kept is None:
            return None
        if key_hash is not None:
            tenant_id = self._key_tenants.get(key_hash)
            if tenant_id is None:
                return None
        assert tenant_id is not None
        kept = self._kept_standing(tenant_id, now)
        if kept is None:
            return None
        revision, st = kept
        if st.closed is not None:
            return None  # refused whatever the count: the transaction decides
        sessions = [Session.open(id=r.session_id, agent_id=r.agent_id, direction=r.direction,
                                 answered_only=st.answered_only, now=now) for r in requests]
        ids = [s.id for s in sessions]
        if len(set(ids)) != len(ids) or any(s.billable_sessions != 1 for s in sessions):
            return None  # a replay within the batch, or an uncounted admission: decided in order
        params = {"t": tenant_id, "rev": revision, "c": st.counter, "n": len(sessions),
                  "cap": NO_CAP if st.cap is None else st.cap, "ao": st.answered_only, "now": now,
                  "ids": ids, "agents": [s.agent_id for s in sessions], "dirs": [s.direction.value for s in sessions]}
        if key_hash is None:
            return _KeptBatch(sessions, self.sql_admit_kept, params)
        assert self.sql_admit_kept_key is not None
        return _KeptBatch(sessions, self.sql_admit_kept_key, {**params, "h": key_hash})

    def _admit_kept_batch(
        self, tenant_id: str | None, key_hash: str | None, requests: Sequence[AdmissionRequest], now: datetime
    ) -> list[OpenResult | DomainError | None] | None:
        """PostgreSQL: new ids, each counted, for a tenant (or an API key's) whose standing is kept,
        admitted in one statement (one round trip and one commit, where the transaction takes
        three); None, with nothing changed, for the transaction to decide one by one."""
        batch = self._kept_batch(tenant_id, key_hash, requests, now)
        if batch is None:
            return None
        assert self.db.gate is not None
        with self.db.gate.connection() as conn:
            try:
                (recorded,) = conn.execute(batch.sql, batch.params).fetchone()
            except self._lost_race:
                return None  # an id that exists, or was admitted meanwhile: nothing was kept
        return batch.answers(recorded)

    async def open_sessions_kept_async(
        self, pool: Any, key_hash: str, requests: Sequence[AdmissionRequest], now: datetime
    ) -> list[OpenResult | DomainError | None] | None:
        """`_admit_kept_batch` on an asyncio connection of `pool` (`Database.async_pool`), so the
        gate's common case needs no worker thread: all admitted, or None with nothing changed, for
        `open_sessions_for_key` to decide. A lone request goes the same way, as a batch of one."""
        batch = self._kept_batch(None, key_hash, requests, now)
        if batch is None:
            return None
        try:
            # A hung database: given up after the statement timeout and a margin (the connection,
            # left mid-statement, is dropped by its pool).
            async with asyncio.timeout(self.db.timeouts.statement + 4), pool.connection() as conn:
                watchdog = self.db.watchdog
                if watchdog is not None:
                    watchdog.watch(conn)  # cut past the statement timeout, as the other pools' are
                try:
                    cur = await conn.execute(batch.sql, batch.params)
                    row = await cur.fetchone()
                except self._lost_race:
                    return None
                finally:
                    if watchdog is not None:
                        watchdog.release(conn)
        except TimeoutError:
            raise DatabaseUnavailable("The database did not answer in time.") from None
        assert row is not None
        return batch.answers(row[0])

    def _admit(
        self, cur: Any, tenant_id: str, revision: int, st: Standing, session_id: str, agent_id: str,
        direction: Direction, now: datetime,
    ) -> OpenResult:
        session = Session.open(
            id=session_id, agent_id=agent_id, direction=direction, answered_only=st.answered_only, now=now
        )
        params = {"t": tenant_id, "id": session_id, "agent": agent_id, "dir": direction.value,
                  "ao": st.answered_only, "now": self._to_db(now), "units": session.billable_sessions}
        if self.sql_admit is not None and st.closed is None and session.billable_sessions:
            cur.execute(self.sql_admit, {**params, "rev": revision, "c": st.counter,
                                         "cap": NO_CAP if st.cap is None else st.cap})
            if cur.fetchone()[0]:
                return OpenResult(session)
            try:  # not counted: the id exists (a replay), else the cap was reached
                return self._replay(cur, tenant_id, session_id, agent_id, direction)
            except NotFound:
                raise _Refused(st.cap_refusal) from None
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
        result = _replay_of(self._session(cur, tenant_id, session_id), agent_id, direction)
        if isinstance(result, SessionIdReused):
            raise result
        return result

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
        """The subscription as it stands at `now` (`subscription.at`), its standing and its usage."""
        with self._read() as cur:
            sub = self._subscription(cur, tenant_id)
            st = standing(sub, now, billing_enabled=self.billing_enabled)
            return at(sub, now), st, self._used(cur, tenant_id, st.counter)
