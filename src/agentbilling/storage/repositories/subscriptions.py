"""Writes to a tenant's `subscriptions` row, each with a new revision token (cached standings then go stale)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import insert, update

from agentbilling.storage.tables import new_revision, subscriptions


def add_subscription(conn: Any, tenant_id: str, values: Mapping[str, Any], now: datetime) -> None:
    """A tenant's first subscription row, in the caller's transaction."""
    conn.execute(insert(subscriptions).values(tenant_id=tenant_id, **values, updated_at=now, revision=new_revision()))


def save_subscription(conn: Any, tenant_id: str, values: Mapping[str, Any], now: datetime) -> int:
    """Changes to the row, in the caller's transaction, under a new revision token, which it returns.

    The token is set here, not left to the column's `onupdate`, so that every writer visibly gives
    the gate a new revision: a process's cached standing and the one-statement admission's
    `checked_revision` compare (README, "Why the gate never over-admits") both depend on it."""
    revision = new_revision()
    conn.execute(update(subscriptions).where(subscriptions.c.tenant_id == tenant_id)
                 .values(**values, updated_at=now, revision=revision))
    return revision
