"""Stored answers to mutating POSTs sent with an Idempotency-Key, each kept for a time to live from its claim
(`AGENTBILLING_IDEMPOTENCY_TTL_SECONDS`, wall clock); the worker deletes expired rows (`expire`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from agentbilling.storage.db import Database
from agentbilling.storage.tables import idempotency_keys

IN_PROGRESS = 0
DEFAULT_TTL = timedelta(days=1)  # as Stripe's
EXPIRE_BATCH = 500  # rows deleted per statement by `expire`
STALE_AFTER = timedelta(minutes=1)  # an in-progress claim older than this belongs to a dead request


@dataclass(frozen=True, slots=True)
class Claim:
    state: str  # "new", "replay", "mismatch", "in_progress"
    status_code: int = 0
    content_type: str = ""
    body: bytes = b""


class IdempotencyStore:
    def __init__(self, db: Database, ttl: timedelta = DEFAULT_TTL) -> None:
        self.db = db
        self.ttl = ttl

    def claim(self, principal: str, key: str, request_hash: str, now: datetime) -> Claim:
        """Reserve the key for this request, or say what an earlier request with it got."""
        try:
            with self.db.write() as conn:
                conn.execute(insert(idempotency_keys).values(
                    principal=principal, key=key, request_hash=request_hash, status_code=IN_PROGRESS, body="",
                    created_at=now,
                ))
            return Claim("new")
        except IntegrityError:
            pass
        with self.db.read() as conn:
            row = conn.execute(
                select(idempotency_keys).where(idempotency_keys.c.principal == principal,
                                               idempotency_keys.c.key == key)
            ).one_or_none()
        if row is None:  # released in between: claim again
            return self.claim(principal, key, request_hash, now)
        if row.created_at <= now - self.ttl:  # expired: the key is new again, whatever it carried
            if self._take_over(principal, key, request_hash, row, now, reset=True):
                return Claim("new")
            return self.claim(principal, key, request_hash, now)
        if row.request_hash != request_hash:
            return Claim("mismatch")
        if row.status_code == IN_PROGRESS:
            if row.created_at <= now - STALE_AFTER and self._take_over(principal, key, request_hash, row, now):
                return Claim("new")
            return Claim("in_progress")
        stored = json.loads(row.body)
        return Claim("replay", row.status_code, stored["content_type"], stored["body"].encode())

    def _take_over(self, principal: str, key: str, request_hash: str, row, now: datetime, *,
                   reset: bool = False) -> bool:
        """Claim a key whose request died (a crash, a cancelled request) before it answered, or
        (`reset`) whose time to live is over."""
        with self.db.write() as conn:
            taken = conn.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.principal == principal, idempotency_keys.c.key == key,
                       idempotency_keys.c.status_code == (row.status_code if reset else IN_PROGRESS),
                       idempotency_keys.c.created_at == row.created_at)
                .values(request_hash=request_hash, created_at=now, status_code=IN_PROGRESS, body="")
            )
            return taken.rowcount == 1

    def save(self, principal: str, key: str, status_code: int, content_type: str, body: bytes) -> None:
        payload = json.dumps({"content_type": content_type, "body": body.decode("utf-8", "replace")})
        with self.db.write() as conn:
            conn.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.principal == principal, idempotency_keys.c.key == key)
                .values(status_code=status_code, body=payload)
            )

    def release(self, principal: str, key: str) -> None:
        with self.db.write() as conn:
            conn.execute(delete(idempotency_keys).where(idempotency_keys.c.principal == principal,
                                                        idempotency_keys.c.key == key))

    def expire(self, now: datetime, *, batch: int = EXPIRE_BATCH, batches: int = 20) -> int:
        """Delete keys whose time to live is over, `batch` rows per transaction, at most `batches`
        transactions (the rest in the next pass); how many were deleted."""
        cutoff = now - self.ttl
        c = idempotency_keys.c
        deleted = 0
        for _ in range(batches):
            with self.db.write() as conn:
                doomed = select(c.principal, c.key).where(c.created_at <= cutoff).limit(batch)
                n = conn.execute(delete(idempotency_keys).where(tuple_(c.principal, c.key).in_(doomed))).rowcount
            deleted += n
            if n < batch:
                break
        return deleted
