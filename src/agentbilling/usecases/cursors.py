"""Cursors of list pages: the (time, id) of the last item, opaque to clients; keyset paging, so a
page costs the same at any depth."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, Unpack

from sqlalchemy import ColumnElement, Row, Select, and_, or_

from agentbilling.domain.errors import InvalidInput
from agentbilling.storage.db import Database

T = TypeVar("T")
Columns = tuple[Any, ...]  # any number of columns, of any types (Row[Any], Select[Any]: one column)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def encode_cursor(at: datetime, item_id: str) -> str:
    raw = json.dumps([at.isoformat(), item_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started, sid = json.loads(raw)
        moment = datetime.fromisoformat(started)
        if moment.tzinfo is None or not isinstance(sid, str) or len(sid) > 200 or _CONTROL.search(sid):
            raise ValueError("not a cursor of ours")
        # In UTC, as stored: a far offset at the edge of the calendar does not fit (OverflowError).
        return moment.astimezone(UTC), sid
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise InvalidInput("The cursor is not one this API handed out.") from None


def newest_first(
    db: Database, query: Select[Unpack[Columns]], at: ColumnElement[datetime], ident: ColumnElement[str],
    cursor: str | None, limit: int, item: Callable[[Row[Unpack[Columns]]], T], key: Callable[[T], tuple[datetime, str]],
) -> tuple[list[T], str | None]:
    """One page of `query`, newest first, keyset-paged on (`at`, `ident`): a page costs the same at
    any depth. The items, and the cursor of the next page (None on the last)."""
    if not 1 <= limit <= 100:
        raise InvalidInput("limit must be between 1 and 100.")
    if cursor:
        moment, last = decode_cursor(cursor)
        query = query.where(or_(at < moment, and_(at == moment, ident < last)))
    with db.read() as conn:
        rows = conn.execute(query.order_by(at.desc(), ident.desc()).limit(limit + 1)).all()
    data = [item(r) for r in rows[:limit]]
    return data, encode_cursor(*key(data[-1])) if len(rows) > limit else None
