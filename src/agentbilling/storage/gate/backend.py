"""What both backends' admission paths share: the gate's reads and writes on a cursor, in a transaction."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from agentbilling.domain.errors import DomainError, NotFound, SessionIdReused
from agentbilling.domain.gate import AdmissionRequest, OpenResult, Refusal, open_session, replay_of, uncounted_refusal
from agentbilling.domain.metering import Session
from agentbilling.domain.plans import Catalog
from agentbilling.domain.subscription import Standing, Subscription
from agentbilling.storage.db import Database
from agentbilling.storage.gate.sql import UNCAPPED, Statements
from agentbilling.storage.gate.standing_cache import StandingCache
from agentbilling.storage.gate.transactions import WriteTransaction, read_transaction
from agentbilling.storage.rows import session_from_row, subscription_from_row

Found = tuple[str, int, Standing]  # the tenant, its subscription's revision, its standing


class Refused(Exception):
    """Unwinds (and so rolls back) an admission the gate refused."""

    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal


def cap_param(st: Standing) -> int:
    return UNCAPPED if st.cap is None else st.cap


class GateBackend(ABC):
    """One backend's way through the gate; `sqlite.py` and `postgres.py` fill in what differs."""

    sql: Statements
    write_begin: str  # a transaction of several statements begins explicitly
    read_begin: str | None
    to_db: Callable[[datetime], Any]
    from_db: Callable[[Any], datetime | None]
    lost_race: tuple[type[Exception], ...]  # what a transaction that lost a race raises, having kept nothing

    def __init__(self, db: Database, catalog: Catalog, *, billing_enabled: bool) -> None:
        self.db = db
        self.catalog = catalog
        self.cache = StandingCache(catalog, billing_enabled, self.from_db)

    # -- what differs ------------------------------------------------------------------

    @abstractmethod
    def locked(self, cur: Any, tenant_id: str | None, key_hash: str | None, now: datetime) -> Found | None:
        """The key's tenant (or `tenant_id`) and its standing, read after the counter row is locked."""

    @abstractmethod
    def admit_in_order(
        self, cur: Any, tenant_id: str, revision: int, st: Standing, requests: Sequence[AdmissionRequest],
        now: datetime,
    ) -> list[OpenResult | DomainError | None]:
        """A batch decided one request after another, in the caller's transaction."""

    @abstractmethod
    def batch_transaction(self) -> AbstractContextManager[Any]:
        """The transaction a group-commit batch runs in."""

    # -- transactions ------------------------------------------------------------------

    def write(self) -> WriteTransaction:
        return WriteTransaction(self.db, self.write_begin)

    def read(self) -> AbstractContextManager[Any]:
        return read_transaction(self.db, self.read_begin)

    def in_transaction(self, admit: Callable[[Any], OpenResult | None]) -> OpenResult | None:
        """An admission in a write transaction; a refusal rolls it back. One that lost a race with
        the same id (PostgreSQL: its insert fails after its count, undoing both) runs again and
        finds the replay."""
        for attempt in (1, 2):
            try:
                with self.write() as cur:
                    return admit(cur)
            except Refused as refused:
                return OpenResult(None, refusal=refused.refusal)
            except self.lost_race:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # -- reads -------------------------------------------------------------------------

    def subscription_row(self, cur: Any, tenant_id: str) -> Any:
        cur.execute(self.sql.subscription, {"t": tenant_id})
        row = cur.fetchone()
        if row is None:
            raise NotFound(f"No tenant {tenant_id!r}.")
        return row

    def subscription(self, cur: Any, tenant_id: str) -> Subscription:
        return subscription_from_row(tenant_id, self.subscription_row(cur, tenant_id)[1:], self.catalog, self.from_db)

    def standing(self, cur: Any, tenant_id: str, now: datetime) -> Standing:
        """The standing at `now`, from the row read in this transaction; derived again only when the
        row's revision changed or `now` left the window the cached one holds for."""
        cur.execute(self.sql.revision, {"t": tenant_id})
        found = cur.fetchone()
        if found is not None:
            cached = self.cache.get(tenant_id, now)
            if cached is not None and cached[0] == found[0]:
                return cached[1]
        row = self.subscription_row(cur, tenant_id)
        return self.cache.of_row(tenant_id, row[0], row[1:], now)

    def read_standing(self, cur: Any, tenant_id: str | None, key_hash: str | None, now: datetime) -> Found | None:
        """The tenant (the API key's, if given: None when it is not live), the subscription's
        revision and its standing, read now (the whole row only when the cached standing is stale)."""
        if key_hash is not None:
            cur.execute(self.sql.key_revision, {"h": key_hash})
            found = cur.fetchone()
            if found is None:
                self.cache.forget_key(key_hash)
                return None
            tenant_id = self.cache.remember_key(key_hash, found[0])
        else:
            assert tenant_id is not None
            cur.execute(self.sql.revision, {"t": tenant_id})
            found = (tenant_id, *row) if (row := cur.fetchone()) is not None else None
        if found is not None:
            cached = self.cache.get(tenant_id, now)
            if cached is not None and cached[0] == found[1]:
                return tenant_id, cached[0], cached[1]
        row = self.subscription_row(cur, tenant_id)
        return tenant_id, row[0], self.cache.of_row(tenant_id, row[0], row[1:], now)

    def used(self, cur: Any, tenant_id: str, counter: str) -> int:
        cur.execute(self.sql.used, {"t": tenant_id, "c": counter})
        row = cur.fetchone()
        return row[0] if row else 0

    def session(self, cur: Any, tenant_id: str, session_id: str, *, for_update: bool = False) -> Session:
        cur.execute(self.sql.session_for_update if for_update else self.sql.session, {"t": tenant_id, "id": session_id})
        row = cur.fetchone()
        if row is None:
            raise NotFound(f"No session {session_id!r}.")
        return session_from_row(row, self.from_db)

    # -- writes ------------------------------------------------------------------------

    def save_session(self, cur: Any, tenant_id: str, s: Session) -> None:
        to_db = self.to_db
        cur.execute(self.sql.update_session, {
            "t": tenant_id, "id": s.id, "last": to_db(s.last_activity_at),
            "answered": to_db(s.answered_at) if s.answered_at else None,
            "ended": to_db(s.ended_at) if s.ended_at else None, "units": s.billable_sessions,
        })

    def count(self, cur: Any, tenant_id: str, counter: str, units: int) -> None:
        cur.execute(self.sql.count, {"t": tenant_id, "c": counter, "n": units})

    def admit(self, cur: Any, tenant_id: str, revision: int, st: Standing, request: AdmissionRequest,
              now: datetime) -> OpenResult:
        """One admission in a transaction that holds what `locked` took."""
        session = open_session(st, request, now)
        return self.admit_by_insert(cur, tenant_id, st, session, self.session_params(tenant_id, st, session, now))

    def session_params(self, tenant_id: str, st: Standing, session: Session, now: datetime) -> dict[str, Any]:
        return {"t": tenant_id, "id": session.id, "agent": session.agent_id, "dir": session.direction.value,
                "ao": st.answered_only, "now": self.to_db(now), "units": session.billable_sessions}

    def admit_by_insert(self, cur: Any, tenant_id: str, st: Standing, session: Session,
                        params: dict[str, Any]) -> OpenResult:
        """Record the session (or find the replay), then decide: closed, or counted under the cap,
        or (counting nothing yet) admitted while below it. A refusal raises `Refused`."""
        cur.execute(self.sql.insert_session, params)
        if cur.rowcount == 0:
            return self.replay(cur, tenant_id, session)
        if st.closed is not None:
            raise Refused(st.closed)
        if session.billable_sessions:
            cur.execute(self.sql.count_capped, {"t": tenant_id, "c": st.counter, "cap": cap_param(st)})
            if cur.fetchone() is None:
                raise Refused(st.cap_refusal)
        else:
            reason = uncounted_refusal(st, self.used(cur, tenant_id, st.counter))
            if reason is not None:
                raise Refused(reason)
        return OpenResult(session)

    def replay(self, cur: Any, tenant_id: str, asked: Session) -> OpenResult:
        """The answer for an id that exists (raises NotFound if it does not)."""
        result = replay_of(self.session(cur, tenant_id, asked.id), asked.agent_id, asked.direction)
        if isinstance(result, SessionIdReused):
            raise result
        return result
