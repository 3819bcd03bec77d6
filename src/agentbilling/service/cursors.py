"""Cursors of list pages: the (time, id) of the last item, opaque to clients; keyset paging, so a
page costs the same at any depth."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from agentbilling.domain.errors import InvalidInput


def encode_cursor(at: datetime, item_id: str) -> str:
    raw = json.dumps([at.isoformat(), item_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started, sid = json.loads(raw)
        moment = datetime.fromisoformat(started)
        if moment.tzinfo is None or not isinstance(sid, str):
            raise ValueError("not a cursor of ours")
        return moment, sid
    except (ValueError, TypeError):
        raise InvalidInput("The cursor is not one this API handed out.") from None
