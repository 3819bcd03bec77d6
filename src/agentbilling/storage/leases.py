"""Leases held in the database: one holder per tenant at a time, across processes.
Why a row and not SQLite's write lock: docs/decisions/0201-tenant-leases-are-rows.md."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from agentbilling.storage.db import Database
from agentbilling.storage.tables import tenant_leases

HOLD = timedelta(seconds=60)  # a lease not given back by then belongs to a holder that died
POLL_S = 0.02


@contextlib.contextmanager
def tenant_lease(db: Database, tenant_id: str, *, hold: timedelta = HOLD) -> Iterator[None]:
    """Hold the tenant's lease for the block, waiting for whoever holds it (wall clock).

    Provider webhooks of one tenant are applied under it, whichever process received them
    (usecases/provider_events.py `receive`). A holder that died frees it when it expires (`HOLD`)."""
    holder = secrets.token_hex(8)
    while not _take(db, tenant_id, holder, hold):
        time.sleep(POLL_S)
    try:
        yield
    finally:
        with db.write() as conn:
            conn.execute(delete(tenant_leases).where(tenant_leases.c.tenant_id == tenant_id,
                                                     tenant_leases.c.holder == holder))


def _take(db: Database, tenant_id: str, holder: str, hold: timedelta) -> bool:
    now = datetime.now(UTC)
    c = tenant_leases.c
    try:
        with db.write() as conn:
            taken = conn.execute(update(tenant_leases).where(c.tenant_id == tenant_id, c.expires_at <= now)
                                 .values(holder=holder, expires_at=now + hold)).rowcount
            if taken:
                return True
            if conn.execute(select(c.holder).where(c.tenant_id == tenant_id)).first() is not None:
                return False
            conn.execute(insert(tenant_leases).values(tenant_id=tenant_id, holder=holder, expires_at=now + hold))
            return True
    except IntegrityError:  # taken by another process meanwhile (PostgreSQL; SQLite's write lock orders them)
        return False
