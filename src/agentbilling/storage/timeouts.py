"""How long the service waits on its database, and how it tells an unreachable database from a fault."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the service waits on its database before it says so (settings.py, README)."""

    connect: float = 5.0  # to open a connection (libpq connect_timeout)
    statement: float = 15.0  # PostgreSQL's statement_timeout on every connection of the service
    pool: float = 5.0  # for a free connection from any of the pools
    keepalive_idle: int = 10  # TCP keepalives: first probe after this many idle seconds, then
    keepalive_interval: int = 5  # one every this many, and the connection is dead after
    keepalive_count: int = 3  # this many unanswered (or data unacknowledged that long: tcp_user_timeout)

    def libpq(self) -> dict[str, Any]:
        """libpq's connection parameters for these timeouts."""
        dead_after = self.keepalive_idle + self.keepalive_interval * self.keepalive_count
        return {"connect_timeout": max(1, math.ceil(self.connect)), "keepalives": 1,
                "keepalives_idle": self.keepalive_idle, "keepalives_interval": self.keepalive_interval,
                "keepalives_count": self.keepalive_count, "tcp_user_timeout": dead_after * 1000}



class DatabaseUnavailable(Exception):
    """The database could not be reached in time: no free connection, or none could be opened."""


def unreachable(exc: BaseException) -> bool:
    """Whether an error means the database cannot be reached (or did not answer in time), as
    opposed to a fault in what was asked of it: a 503 to retry, not a 500."""
    import sqlalchemy.exc

    if isinstance(exc, DatabaseUnavailable | sqlalchemy.exc.TimeoutError):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, sqlite3.OperationalError):  # locked or busy past busy_timeout, the file gone or unreadable
        return any(m in str(exc) for m in ("locked", "busy", "unable to open", "disk I/O"))
    try:
        import psycopg
        import psycopg_pool
    except ImportError:  # pragma: no cover - PostgreSQL's driver is always installed with the package
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | psycopg_pool.PoolTimeout)

