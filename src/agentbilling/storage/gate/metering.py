"""The hot path's front: admitting sessions and counting units on raw driver connections (the ORM stays off it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agentbilling.domain.errors import DomainError
from agentbilling.domain.gate import AdmissionRequest, OpenResult
from agentbilling.domain.metering import Direction, Sender, Session
from agentbilling.domain.plans import Catalog
from agentbilling.domain.subscription import Standing, Subscription, at, standing
from agentbilling.storage.db import Database
from agentbilling.storage.gate.backend import GateBackend
from agentbilling.storage.gate.sqlite import SqliteGate

if TYPE_CHECKING:
    from agentbilling.storage.gate.postgres import PostgresGate

__all__ = ["AdmissionRequest", "MeteringStore", "OpenResult"]

Answers = list[OpenResult | DomainError | None]


class MeteringStore:
    """Three ways through the gate, with the same decisions (README, "Why the gate never over-admits"):
    - PostgreSQL, a tenant whose standing is cached: new ids (one, or a batch) in one statement on an
      autocommit connection, guarded by the key and the subscription's revision (`postgres.py`);
    - one admission, one transaction, for anything out of the ordinary (`open_session…`);
    - several admissions under one API key in one transaction and one commit (`open_sessions_for_key`).
    Every path that takes both the counter's row and a session's id takes the counter first.
    """

    def __init__(self, db: Database, catalog: Catalog, *, billing_enabled: bool = True) -> None:
        self.db = db
        self.catalog = catalog
        self.billing_enabled = billing_enabled
        self.backend: GateBackend
        self._postgres: PostgresGate | None = None
        if db.is_sqlite:
            self.backend = SqliteGate(db, catalog, billing_enabled=billing_enabled)
        else:
            from agentbilling.storage.gate.postgres import PostgresGate

            self.backend = self._postgres = PostgresGate(db, catalog, billing_enabled=billing_enabled)
        # The one-statement admission (PostgreSQL) on or off; off, every admission is a transaction
        # (tests that need every admission to queue on the counter row turn it off).
        self.one_statement = self._postgres is not None

    # -- admissions --------------------------------------------------------------------

    def open_session(
        self, tenant_id: str, session_id: str, agent_id: str, direction: Direction, now: datetime
    ) -> OpenResult:
        """Admit and count the first unit in one transaction, or refuse and change nothing."""
        request = AdmissionRequest(session_id, agent_id, direction)
        by_statement = self.admit_by_one_statement(tenant_id, None, request, now)
        if by_statement is not None:
            return by_statement

        def admit(cur: Any) -> OpenResult:
            found = self.backend.locked(cur, tenant_id, None, now)
            assert found is not None
            return self.backend.admit(cur, tenant_id, found[1], found[2], request, now)

        result = self.backend.in_transaction(admit)
        assert result is not None
        return result

    def open_session_for_key(
        self, key_hash: str, session_id: str, agent_id: str, direction: Direction, now: datetime
    ) -> OpenResult | None:
        """The agent runtime's admission: the API key's tenant (None: no such live key) and the
        admission, in the same transaction, so a request costs one connection checkout and commit."""
        request = AdmissionRequest(session_id, agent_id, direction)
        by_statement = self.admit_by_one_statement(None, key_hash, request, now)
        if by_statement is not None:
            return by_statement

        def admit(cur: Any) -> OpenResult | None:
            found = self.backend.locked(cur, None, key_hash, now)
            if found is None:
                return None
            tenant_id, revision, st = found
            return self.backend.admit(cur, tenant_id, revision, st, request, now)

        return self.backend.in_transaction(admit)

    def open_sessions_for_key(
        self, key_hash: str, requests: Sequence[AdmissionRequest], now: datetime
    ) -> list[OpenResult | Exception | None]:
        """Admissions under one API key in one transaction and one commit (group commit): each
        request gets the answer `open_session_for_key` would give it, as if they ran one after
        another in order (None: no live key; an error such as a reused id is returned, not raised).

        A busy tenant's counter row is locked on PostgreSQL until the commit is on disk, so
        admissions one per transaction cannot outrun the disk's flushes; a batch pays one flush.
        """
        if len(requests) == 1:
            return [self._open_one(key_hash, requests[0], now)]
        by_statement = self._batch_by_one_statement(None, key_hash, requests, now)
        if by_statement is not None:
            return list(by_statement)
        try:
            with self.backend.batch_transaction() as cur:
                found = self.backend.locked(cur, None, key_hash, now)
                if found is None:
                    return [None] * len(requests)
                tenant_id, revision, st = found
                return list(self.backend.admit_in_order(cur, tenant_id, revision, st, requests, now))
        except self.backend.lost_race:
            # One of the ids was recorded meanwhile by an admission that does not take the counter
            # (an uncounted one): nothing of the batch was kept; each goes on its own.
            return [self._open_one(key_hash, r, now) for r in requests]

    def _open_one(self, key_hash: str, r: AdmissionRequest, now: datetime) -> OpenResult | Exception | None:
        """One request of a batch on its own; whatever it raises is its answer, so that one failing
        does not take the answers of those already committed before it."""
        try:
            return self.open_session_for_key(key_hash, r.session_id, r.agent_id, r.direction, now)
        except Exception as err:
            return err

    def admit_by_one_statement(
        self, tenant_id: str | None, key_hash: str | None, request: AdmissionRequest, now: datetime
    ) -> OpenResult | None:
        """PostgreSQL's one-statement admission of one new id: the answer, or None (nothing changed)
        for a transaction to decide."""
        answers = self._batch_by_one_statement(tenant_id, key_hash, [request], now)
        if answers is None:
            return None
        (answer,) = answers
        assert isinstance(answer, OpenResult)
        return answer

    def _batch_by_one_statement(
        self, tenant_id: str | None, key_hash: str | None, requests: Sequence[AdmissionRequest], now: datetime
    ) -> Answers | None:
        """New ids, each counted, for a tenant (or an API key's) whose standing is cached, admitted
        in one statement (one round trip and one commit, where the transaction takes three); None,
        with nothing changed, for the transaction to decide one by one."""
        if not self.one_statement or self._postgres is None:
            return None
        batch = self._postgres.statement_batch(tenant_id, key_hash, requests, now)
        return None if batch is None else self._postgres.admit_batch(batch)

    async def open_sessions_async(
        self, pool: Any, key_hash: str, requests: Sequence[AdmissionRequest], now: datetime
    ) -> Answers | None:
        """The one statement on an asyncio connection of `pool` (`Database.async_pool`), so the
        gate's common case needs no worker thread: all admitted, or None with nothing changed, for
        `open_sessions_for_key` to decide. A lone request goes the same way, as a batch of one.
        (The name is kept for client.py.)"""
        if not self.one_statement or self._postgres is None:
            return None
        batch = self._postgres.statement_batch(None, key_hash, requests, now)
        if batch is None:
            return None
        return await self._postgres.admit_batch_async(pool, batch)

    # -- sessions ----------------------------------------------------------------------

    def record_message(self, tenant_id: str, session_id: str, sender: Sender, now: datetime) -> Session:
        """A message moves the latest activity; new units count in the period they appear in (R3)."""
        with self.backend.write() as cur:
            before = self.backend.session(cur, tenant_id, session_id, for_update=True)
            after = before.on_message(sender, now)
            self.backend.save_session(cur, tenant_id, after)
            added = after.billable_sessions - before.billable_sessions
            if added:
                self.backend.count(cur, tenant_id, self.backend.standing(cur, tenant_id, now).counter, added)
            return after

    def end_session(self, tenant_id: str, session_id: str, now: datetime) -> Session:
        with self.backend.write() as cur:
            before = self.backend.session(cur, tenant_id, session_id, for_update=True)
            after = before.end(now)
            if after is not before:
                self.backend.save_session(cur, tenant_id, after)
            return after

    # -- reads -------------------------------------------------------------------------

    def tenant_for_key_hash(self, key_hash: str) -> str | None:
        """Looked up on every agent request, so on the raw path too; revocation applies at once."""
        with self.backend.read() as cur:
            cur.execute(self.backend.sql.key, {"h": key_hash})
            row = cur.fetchone()
            return row[0] if row else None

    def get_session(self, tenant_id: str, session_id: str) -> Session:
        with self.backend.read() as cur:
            return self.backend.session(cur, tenant_id, session_id)

    def standing_and_usage(self, tenant_id: str, now: datetime) -> tuple[Subscription, Standing, int]:
        """The subscription as it stands at `now` (`subscription.at`), its standing and its usage."""
        with self.backend.read() as cur:
            sub = self.backend.subscription(cur, tenant_id)
            st = standing(sub, now, billing_enabled=self.billing_enabled)
            return at(sub, now), st, self.backend.used(cur, tenant_id, st.counter)
