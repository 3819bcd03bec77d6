"""Claiming due rows for one worker: the one mechanism behind emails and webhooks out.
How a claim is taken and lapses, and why: docs/decisions/0203-delivery-claims-lapse.md."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Table, and_, select, update

from agentbilling.storage.db import Database


def claim(db: Database, table: Table, keys: Sequence[Column[Any]], due: Any, order: Sequence[Any],
          claimed_until: Column[Any], until: datetime, batch: int) -> list[tuple[Any, ...]]:
    """The keys of up to `batch` due rows, in `order`, now held by the caller until `until`.

    On PostgreSQL the due rows are locked with SKIP LOCKED, so another worker takes the next ones; on
    SQLite the write transaction holds the database's one write lock. Each row is claimed by an update
    of `claimed_until` that holds only while it is still due, so a lapsed claim is the only way to take
    it twice."""
    with db.write() as conn:
        query = select(*keys).where(due).order_by(*order).limit(batch)
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        claimed = []
        for key in conn.execute(query).all():
            mine = and_(*(col == value for col, value in zip(keys, key, strict=True)), due)
            if conn.execute(update(table).where(mine).values({claimed_until.name: until})).rowcount:
                claimed.append(tuple(key))
    return claimed
