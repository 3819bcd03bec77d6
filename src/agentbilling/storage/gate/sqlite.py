"""SQLite's admission path: every transaction holds the database's write lock from BEGIN IMMEDIATE."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from agentbilling.domain.errors import DomainError
from agentbilling.domain.gate import AdmissionRequest, OpenResult, decide_in_order
from agentbilling.domain.subscription import Standing
from agentbilling.storage.gate import sql
from agentbilling.storage.gate.backend import Found, GateBackend
from agentbilling.storage.rows import session_from_row
from agentbilling.storage.types import from_sqlite_text, sqlite_text


class SqliteGate(GateBackend):
    sql = sql.SQLITE
    write_begin = "BEGIN IMMEDIATE"
    read_begin = None
    to_db = staticmethod(sqlite_text)
    from_db = staticmethod(from_sqlite_text)
    lost_race = (sqlite3.IntegrityError,)  # the same id recorded meanwhile

    def locked(self, cur: Any, tenant_id: str | None, key_hash: str | None, now: datetime) -> Found | None:
        """The standing read in a transaction that holds the write lock since BEGIN IMMEDIATE: no
        writer can commit between the read and the count, so one read is enough."""
        return self.read_standing(cur, tenant_id, key_hash, now)

    def batch_transaction(self) -> AbstractContextManager[Any]:
        return self.write()

    def admit_in_order(
        self, cur: Any, tenant_id: str, revision: int, st: Standing, requests: Sequence[AdmissionRequest],
        now: datetime,
    ) -> list[OpenResult | DomainError | None]:
        """Several admissions in one transaction: take the counter row, read which ids exist, decide
        in order, then record the admitted sessions and the new count."""
        ids = [r.session_id for r in requests]
        cur.execute(sql.SQLITE_TAKE_COUNTER, {"t": tenant_id, "c": st.counter})
        used = cur.fetchone()[0]
        cur.execute(sql.SQLITE_SESSIONS_AMONG, {"t": tenant_id, "ids": json.dumps(ids)})
        known = [session_from_row(row, self.from_db) for row in cur.fetchall()]
        decided = decide_in_order(st, requests, known, used, now)
        if decided.admitted:
            stamp = self.to_db(now)
            cur.executemany(sql.SQLITE_RECORD_SESSION, [
                {"t": tenant_id, "id": s.id, "agent": s.agent_id, "dir": s.direction.value,
                 "ao": s.answered_only, "now": stamp, "units": s.billable_sessions} for s in decided.admitted
            ])
            if decided.count is not None:
                cur.execute(sql.SQLITE_SET_COUNT, {"t": tenant_id, "c": st.counter, "n": decided.count})
        return decided.results
