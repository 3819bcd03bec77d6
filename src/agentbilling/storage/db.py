"""The database handle: a SQLAlchemy engine for most work, raw driver connections for the gate."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import make_url

from agentbilling.storage.raw_pool import RawPool, Watchdog
from agentbilling.storage.sqlite_checkpointer import (
    SQLITE_BUSY_TIMEOUT_MS,
    SQLITE_JOURNAL_SIZE_LIMIT,
    SQLITE_MMAP_BYTES,
    SqliteCheckpointer,
)
from agentbilling.storage.timeouts import DatabaseUnavailable, Timeouts, unreachable

__all__ = ["Database", "DatabaseUnavailable", "RawPool", "Timeouts", "Watchdog", "unreachable"]

# PostgreSQL's raw connections. Autocommit: a single statement is its own transaction (one round
# trip, as the gate's common case is); transactions of several statements issue BEGIN themselves.
# Custom plans only: psycopg prepares a statement after a few runs, and PostgreSQL would then keep
# a generic plan made while the tables were small (a sessions scan, cheap on an empty table) until
# the next ANALYZE, however large the table grows meanwhile.
RAW_PG_PLANS = "-c plan_cache_mode=force_custom_plan"


class Database:
    """One database, SQLite or PostgreSQL, with the same schema and the same rules on both."""

    def __init__(self, url: str, *, pool_size: int = 8, sqlite_synchronous: str = "NORMAL",
                 pg_synchronous_commit: str | None = None, timeouts: Timeouts | None = None) -> None:
        self.url = make_url(url)
        self.timeouts = timeouts = timeouts or Timeouts()
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._sqlite_synchronous = sqlite_synchronous
        # PostgreSQL: settings every connection of the service starts with (libpq `options`).
        self._pg_options = f"-c statement_timeout={int(timeouts.statement * 1000)}" + (
            f" -c synchronous_commit={pg_synchronous_commit}" if pg_synchronous_commit else "")
        if self.is_sqlite:
            if not self.url.database or self.url.database == ":memory:":
                raise ValueError("agentbilling needs a SQLite file, not an in-memory database")
            self.engine = create_engine(self.url, pool_size=pool_size, max_overflow=pool_size,
                                        pool_timeout=timeouts.pool)
            event.listen(self.engine, "connect", self._sqlite_on_connect)
            event.listen(self.engine, "begin", self._sqlite_on_begin)
            # One writer at a time in this process, so that writers queue here, in order,
            # instead of sleeping in SQLite's busy handler. Other processes meet busy_timeout.
            self.write_lock: contextlib.AbstractContextManager[Any] = threading.RLock()
            self._checkpointer: SqliteCheckpointer | None = SqliteCheckpointer(self.url.database, self.write_lock)
        else:
            if self.url.drivername in ("postgresql", "postgres"):
                self.url = self.url.set(drivername="postgresql+psycopg")
            self.engine = create_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                pool_timeout=timeouts.pool, connect_args={"options": self._pg_options, **timeouts.libpq()},
            )
            self.write_lock = contextlib.nullcontext()
            self._checkpointer = None
        # PostgreSQL: connections held past the statement timeout (and a margin) are cut.
        self.watchdog = None if self.is_sqlite else Watchdog(timeouts.statement + 2)
        if self.watchdog is not None:
            watchdog = self.watchdog
            event.listen(self.engine, "checkout", lambda dbapi_conn, *_: watchdog.watch(dbapi_conn))
            event.listen(self.engine, "checkin", lambda dbapi_conn, *_: watchdog.release(dbapi_conn))
        self.raw = RawPool(self._raw_connect, pool_size * 2, timeouts.pool, self.watchdog)
        # PostgreSQL: the gate's one-statement admissions, on connections of their own that keep
        # the plans they make (see `async_pool`); None on SQLite.
        self.gate: RawPool | None = (None if self.is_sqlite
                                     else RawPool(self._gate_connect, pool_size * 2, timeouts.pool, self.watchdog))

    # -- raw driver connections (the hot path) --------------------------------------------

    def _raw_connect(self) -> Any:
        if self.is_sqlite:
            conn = sqlite3.connect(self.url.database, isolation_level=None, check_same_thread=False)
            self._sqlite_pragmas(conn)
            return conn
        import psycopg

        return psycopg.connect(self.conninfo(), **self._pg_connect_args(custom_plans=True))

    def _gate_connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.conninfo(), **self._pg_connect_args(custom_plans=False))

    def _pg_connect_args(self, *, custom_plans: bool) -> dict[str, Any]:
        """psycopg's arguments for the raw connections (`custom_plans`, see RAW_PG_PLANS) or the
        gate's. The gate's keep the plans they make (psycopg prepares a statement after a few
        runs): the one statement they run looks up rows only by unique keys
        (`gate/sql.py`'s `PG_ADMIT_BATCH`), so no plan of it goes stale as tables grow, and planning it
        afresh would cost more server time than running it."""
        options = f"{RAW_PG_PLANS if custom_plans else ''} {self._pg_options}".strip()
        return {"autocommit": True, "options": options, **self.timeouts.libpq()}

    def async_pool(self, size: int = 4) -> Any:
        """PostgreSQL: a pool of asyncio connections like `gate`'s, for the gate's one-statement
        admissions on an event loop (`MeteringStore.open_sessions_async`); the caller opens
        it in its loop (`await pool.open()`) and closes it there. None on SQLite, whose driver has
        no asyncio side."""
        if self.is_sqlite:
            return None
        from psycopg_pool import AsyncConnectionPool

        # A connection that broke (its database restarted, a failover) is dropped when it comes
        # back to the pool; the pool opens another, retrying while the database is away.
        return AsyncConnectionPool(self.conninfo(), kwargs=self._pg_connect_args(custom_plans=False), min_size=1,
                                   max_size=size, open=False, name="agentbilling-gate",
                                   timeout=self.timeouts.pool)

    def conninfo(self) -> str:
        """The libpq connection string of a PostgreSQL database, for the raw driver."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def _sqlite_pragmas(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._sqlite_synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer thread does it
        conn.execute(f"PRAGMA journal_size_limit = {SQLITE_JOURNAL_SIZE_LIMIT}")
        # Read pages through the OS page cache shared by every connection, not a small private
        # cache each: index lookups stay fast as the sessions table grows.
        conn.execute(f"PRAGMA mmap_size = {SQLITE_MMAP_BYTES}")

    # -- SQLAlchemy connections -----------------------------------------------------------

    def _sqlite_on_connect(self, dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        self._sqlite_pragmas(dbapi_conn)

    @staticmethod
    def _sqlite_on_begin(conn: Connection) -> None:
        # A writer takes the write lock at BEGIN, so it never fails to upgrade a read lock.
        write = conn.get_execution_options().get("agentbilling_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A read-write transaction, committed when the block ends without an error."""
        with self.write_lock, self.engine.connect() as conn:
            conn.execution_options(agentbilling_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self.raw.close()
        if self.gate is not None:
            self.gate.close()
        if self.watchdog is not None:
            self.watchdog.stop()
        self.engine.dispose()
