"""PostgreSQL's admission path: the counter row first, and one statement for a tenant whose standing is cached."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import psycopg.errors

from agentbilling.domain.errors import DomainError, NotFound
from agentbilling.domain.gate import AdmissionRequest, OpenResult, all_new_and_counted, decide_in_order, open_session
from agentbilling.domain.metering import Session
from agentbilling.domain.subscription import Standing
from agentbilling.storage.db import DatabaseUnavailable
from agentbilling.storage.gate import sql
from agentbilling.storage.gate.backend import Found, GateBackend, Refused, cap_param
from agentbilling.storage.rows import same, session_from_row

PERIOD_CHANGES_TOLERATED = 4  # standings read again after a lock whose period moved meanwhile


class StatementBatch(NamedTuple):
    """New ids to admit by the one statement (`sql.PG_ADMIT_BATCH`), with its parameters."""

    sessions: list[Session]
    statement: str
    params: dict[str, Any]

    def answers(self, recorded: int) -> list[OpenResult | DomainError | None] | None:
        """All admitted, or None: nothing was recorded."""
        if recorded != len(self.sessions):
            assert recorded == 0, recorded
            return None
        return [OpenResult(s) for s in self.sessions]


class PostgresGate(GateBackend):
    sql = sql.POSTGRES
    write_begin = "BEGIN"  # raw connections are in autocommit: one statement is one transaction
    read_begin = "BEGIN"  # one snapshot for the reads of a block
    to_db = staticmethod(same)
    from_db = staticmethod(same)
    # The same id recorded meanwhile, or a deadlock the server broke by aborting this transaction
    # (a message locks its session before the counter; admissions take the counter first).
    lost_race = (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected)

    def locked(self, cur: Any, tenant_id: str | None, key_hash: str | None, now: datetime) -> Found | None:
        """The standing read after this transaction holds the counter row it counts in, so that no
        writer of the key or the subscription can commit between the read and the count (every such
        writer takes the tenant's counter rows: migration 0007's trigger). The row to lock comes
        from the cached standing if there is one (a round trip fewer); if the standing read after
        the lock counts in another period, that row is locked in turn."""
        known = tenant_id if key_hash is None else self.cache.tenant_of_key(key_hash)
        cached = self.cache.get(known, now) if known is not None else None
        found = ((known, *cached) if known is not None and cached is not None
                 else self.read_standing(cur, tenant_id, key_hash, now))
        for _ in range(PERIOD_CHANGES_TOLERATED):
            if found is None:
                return None
            counter = {"t": found[0], "c": found[2].counter}
            cur.execute(sql.PG_ENSURE_COUNTER, counter)
            cur.execute(sql.PG_LOCK_COUNTER, counter)
            cur.fetchone()
            again = self.read_standing(cur, found[0] if key_hash is None else None, key_hash, now)
            if again is None or again[2].counter == found[2].counter:
                return again
            found = again
        raise RuntimeError(f"The subscription of {found[0]!r} kept changing its period.")

    def admit(self, cur: Any, tenant_id: str, revision: int, st: Standing, request: AdmissionRequest,
              now: datetime) -> OpenResult:
        """A new session that counts, on an open gate: counted and recorded in one statement
        (`sql.PG_ADMIT`); anything else as on SQLite."""
        session = open_session(st, request, now)
        params = self.session_params(tenant_id, st, session, now)
        if st.closed is not None or not session.billable_sessions:
            return self.admit_by_insert(cur, tenant_id, st, session, params)
        cur.execute(sql.PG_ADMIT, {**params, "rev": revision, "c": st.counter, "cap": cap_param(st)})
        if cur.fetchone()[0]:
            return OpenResult(session)
        try:  # not counted: the id exists (a replay), else the cap was reached
            return self.replay(cur, tenant_id, session)
        except NotFound:
            raise Refused(st.cap_refusal) from None

    @contextlib.contextmanager
    def batch_transaction(self) -> Iterator[Any]:
        """A write transaction in pipeline mode: statements go out without waiting, and a round trip
        is paid only where a result is read, and at the commit."""
        with self.db.raw.connection() as conn:  # rolls back if anything below raises
            with conn.pipeline():
                cur = conn.cursor()
                cur.execute("BEGIN")
                yield cur
                cur.execute("COMMIT")

    def admit_in_order(
        self, cur: Any, tenant_id: str, revision: int, st: Standing, requests: Sequence[AdmissionRequest],
        now: datetime,
    ) -> list[OpenResult | DomainError | None]:
        """Several admissions in one pipelined transaction: the counter row (locked) and the ids that
        exist in one round trip, then the admitted sessions and the new count in one statement."""
        conn = cur.connection
        lock, find = conn.cursor(), conn.cursor()
        counter = {"t": tenant_id, "c": st.counter}
        conn.cursor().execute(sql.PG_ENSURE_COUNTER, counter)
        lock.execute(sql.PG_LOCK_COUNTER, counter)
        find.execute(sql.PG_SESSIONS_AMONG, {"t": tenant_id, "ids": [r.session_id for r in requests]})
        used, rows = lock.fetchone()[0], find.fetchall()
        decided = decide_in_order(st, requests, [session_from_row(row, same) for row in rows], used, now)
        if decided.admitted:
            sessions = decided.admitted
            cur.execute(sql.PG_RECORD_SESSIONS_AND_COUNT, {
                "t": tenant_id, "rev": revision, "c": st.counter, "n": decided.count, "now": now,
                "ao": st.answered_only, "ids": [s.id for s in sessions], "agents": [s.agent_id for s in sessions],
                "dirs": [s.direction.value for s in sessions], "units": [s.billable_sessions for s in sessions],
            })
        return decided.results

    # -- the one statement, for a tenant whose standing is cached ----------------------

    def statement_batch(
        self, tenant_id: str | None, key_hash: str | None, requests: Sequence[AdmissionRequest], now: datetime
    ) -> StatementBatch | None:
        """The one statement for the tenant, or the API key's, if it may decide them: the tenant's
        standing is cached (and the key's tenant known), and every request is a new id counted at once."""
        if key_hash is not None:
            tenant_id = self.cache.tenant_of_key(key_hash)
            if tenant_id is None:
                return None
        assert tenant_id is not None
        cached = self.cache.get(tenant_id, now)
        if cached is None:
            return None
        revision, st = cached
        sessions = all_new_and_counted(st, requests, now)
        if sessions is None:
            return None  # closed, a replay within the batch, or an uncounted admission: decided in order
        params = {"t": tenant_id, "rev": revision, "c": st.counter, "n": len(sessions), "cap": cap_param(st),
                  "ao": st.answered_only, "now": now, "ids": [s.id for s in sessions],
                  "agents": [s.agent_id for s in sessions], "dirs": [s.direction.value for s in sessions]}
        if key_hash is None:
            return StatementBatch(sessions, sql.PG_ADMIT_BATCH, params)
        return StatementBatch(sessions, sql.PG_ADMIT_BATCH_FOR_KEY, {**params, "h": key_hash})

    def admit_batch(self, batch: StatementBatch) -> list[OpenResult | DomainError | None] | None:
        """The one statement on an autocommit connection of `Database.gate`: all admitted, or None
        with nothing changed."""
        assert self.db.gate is not None
        with self.db.gate.connection() as conn:
            try:
                (recorded,) = conn.execute(batch.statement, batch.params).fetchone()
            except self.lost_race:
                return None  # an id that exists, or was admitted meanwhile: nothing was kept
        return batch.answers(recorded)

    async def admit_batch_async(self, pool: Any, batch: StatementBatch) -> list[OpenResult | DomainError | None] | None:
        """`admit_batch` on an asyncio connection of `pool` (`Database.async_pool`), so the gate's
        common case needs no worker thread."""
        try:
            # A hung database: given up after the statement timeout and a margin (the connection,
            # left mid-statement, is dropped by its pool).
            async with asyncio.timeout(self.db.timeouts.statement + 4), pool.connection() as conn:
                watchdog = self.db.watchdog
                if watchdog is not None:
                    watchdog.watch(conn)  # cut past the statement timeout, as the other pools' are
                try:
                    cur = await conn.execute(batch.statement, batch.params)
                    row = await cur.fetchone()
                except self.lost_race:
                    return None
                finally:
                    if watchdog is not None:
                        watchdog.release(conn)
        except TimeoutError:
            raise DatabaseUnavailable("The database did not answer in time.") from None
        assert row is not None
        return batch.answers(row[0])
