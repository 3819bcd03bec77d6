"""Claiming due rows for one worker: the one mechanism behind emails and webhooks out.

On PostgreSQL the due rows are locked with SKIP LOCKED, so another worker takes the next ones;
on SQLite the write transaction holds the database's one write lock. A row is claimed by a
conditional update of its `claimed_until` (still due, so a lapsed claim is the only way to take
it twice); a claim lapses, so the work of a worker that died is done by another.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Table, and_, select, update

from agentbilling.storage.db import Database


def claim(db: Database, table: Table, keys: Sequence[Column[Any]], due: Any, order: Sequence[Any],
          claimed_until: Column[Any], until: datetime, batch: int) -> list[tuple[Any, ...]]:
    """The keys of up to `batch` due rows, in `order`, now held by the caller until `until`."""
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
