"""The database handle: a SQLAlchemy engine for most work, raw driver connections for the gate."""

from __future__ import annotations

import collections
import contextlib
import math
import os
import select
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import make_url

SQLITE_BUSY_TIMEOUT_MS = 10_000
CHECKPOINT_INTERVAL_S = 0.5
# SQLite with several processes: each process's checkpointer holds off only its own writers, so
# under the others' writes its PASSIVE passes may never backfill the whole log, and the log
# would grow without end (issue 13 measured 193 MB in 45 s with three). Past these sizes a
# TRUNCATE checkpoint takes the database's write lock (tried again for up to WAL_TRUNCATE_BUSY_MS),
# backfills everything and empties the file; journal_size_limit caps what a reset log keeps.
WAL_TRUNCATE_BYTES = 8 << 20  # a log this large that could not be backfilled whole
# A log file this large, whatever it holds: one busy process, whose log restarts at every
# checkpoint, never gets near it (its checkpoints come every 0.1 s once the file is large).
WAL_FILE_TRUNCATE_BYTES = 40 << 20
WAL_TRUNCATE_BUSY_MS = 2_000
SQLITE_JOURNAL_SIZE_LIMIT = 64 << 20
SQLITE_MMAP_BYTES = 4 << 30  # address space, not memory: pages are loaded as they are read
# PostgreSQL's raw connections. Autocommit: a single statement is its own transaction (one round
# trip, as the gate's common case is); transactions of several statements issue BEGIN themselves.
# Custom plans only: psycopg prepares a statement after a few runs, and PostgreSQL would then keep
# a generic plan made while the tables were small (a sessions scan, cheap on an empty table) until
# the next ANALYZE, however large the table grows meanwhile.
RAW_PG_PLANS = "-c plan_cache_mode=force_custom_plan"


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


class Watchdog:
    """Cuts PostgreSQL connections held past their deadline (statement timeout + a margin).

    PostgreSQL's statement_timeout acts only while the server runs; a hung server, or a network
    that still accepts bytes but delivers none, answers nothing and acknowledges everything, so
    neither it nor TCP's keepalives end the wait. This thread does: it shuts the socket of a
    connection checked out too long, so that the call waiting on it fails at once (a broken
    connection, which its pool drops) instead of hanging its request."""

    def __init__(self, limit: float) -> None:
        self._limit = limit
        self._out: dict[int, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, conn: Any) -> None:
        with self._lock:
            self._out[id(conn)] = (time.monotonic() + self._limit, conn)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="db-watchdog", daemon=True)
                self._thread.start()

    def release(self, conn: Any) -> None:
        with self._lock:
            self._out.pop(id(conn), None)

    def _run(self) -> None:
        import socket

        while not self._stop.wait(0.5):
            now = time.monotonic()
            with self._lock:
                late = [k for k, (deadline, _) in self._out.items() if deadline < now]
                for k in late:
                    _, conn = self._out.pop(k)
                    with contextlib.suppress(Exception):
                        fd = conn.pgconn.socket
                        with socket.socket(fileno=os.dup(fd)) as sock:
                            sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stop.set()


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


class SqliteCheckpointer:
    """Moves the WAL into the database file from a thread of its own.

    SQLite's automatic checkpoint runs inside whichever commit crosses the threshold and stalls
    that request for milliseconds. Request connections turn it off; this thread checkpoints
    on its own connection instead, in two passes: a PASSIVE one that copies the bulk of the log
    while writers go on (it never waits for, nor blocks, them), then a second PASSIVE one for
    the few frames written meanwhile, with this process's writers held off by `write_lock`.
    Only a checkpoint that backfilled the whole log lets the next writer restart it: under a
    steady stream of writes the first pass alone never does, and the log grows without end.
    """

    def __init__(self, path: str, write_lock: contextlib.AbstractContextManager[Any] | None = None,
                 interval: float = CHECKPOINT_INTERVAL_S) -> None:
        self._path = path
        self._write_lock = write_lock if write_lock is not None else contextlib.nullcontext()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            pause = self._interval
            while not self._stop.wait(pause):
                # A large log is looked at more often, so that it is caught before it grows more.
                pause = self._interval if self._wal_bytes() < WAL_TRUNCATE_BYTES else self._interval / 5
                try:
                    if conn is None:  # opened here, and again after a failure (e.g. a volume mounted late)
                        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
                        conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
                    _, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if log > 0:
                        with self._write_lock:
                            _, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    # Backfilled whole, the next writer restarts the log (this process's writers were
                    # held off). Not whole, and large: other processes' writers kept it going.
                    if (done < log and log * self._page_size(conn) > WAL_TRUNCATE_BYTES) or \
                            self._wal_bytes() > WAL_FILE_TRUNCATE_BYTES:
                        with self._write_lock:
                            self._truncate(conn)
                except sqlite3.Error:
                    if conn is not None:
                        with contextlib.suppress(sqlite3.Error):
                            conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    @staticmethod
    def _truncate(conn: sqlite3.Connection) -> None:
        """TRUNCATE until it succeeds, for up to WAL_TRUNCATE_BUSY_MS, with this process's writers
        held off: another process's checkpoint running at the same moment makes it give up at
        once (SQLite does not wait for the checkpoint lock), and so would its writers."""
        conn.execute("PRAGMA busy_timeout = 100")
        deadline = time.monotonic() + WAL_TRUNCATE_BUSY_MS / 1000
        try:
            while True:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy or time.monotonic() > deadline:
                    return
                time.sleep(0.005)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")

    def _wal_bytes(self) -> int:
        try:
            return os.path.getsize(self._path + "-wal")
        except OSError:
            return 0

    def _page_size(self, conn: sqlite3.Connection) -> int:
        if not hasattr(self, "_page"):
            self._page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        return self._page

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _dead(conn: Any) -> bool:
    """A PostgreSQL connection that cannot serve: broken, closed, or (idle, so the server has
    nothing to say) with something to read, which is its end: the server or the network closed
    it. One poll of the socket, no round trip."""
    if conn.broken or conn.closed:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class RawPool:
    """A small LIFO pool of DBAPI connections.

    The common case takes no lock: `deque.pop` and `append` are atomic. Only when every
    connection is out does a caller wait on the condition, for one to come back.
    """

    def __init__(self, connect: Callable[[], Any], size: int, timeout: float = 5.0,
                 watchdog: Watchdog | None = None) -> None:
        self._connect = connect
        self._watchdog = watchdog
        self._size = size
        self._timeout = timeout  # for a connection to come back, when all are out
        self._idle: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self._opened = 0  # connections that exist, idle or out
        self._waiting = 0

    def take(self) -> Any:
        """A connection, for a caller that hands it back with `give_back` or `discard`."""
        return self._take()

    def give_back(self, conn: Any) -> None:
        self._give_back(conn)

    def discard(self, conn: Any) -> None:
        if self._watchdog is not None:
            self._watchdog.release(conn)
        with contextlib.suppress(Exception):
            conn.close()
        self._lost()

    def _take(self) -> Any:
        conn = self._checkout()
        if self._watchdog is not None:
            if _dead(conn):
                self.discard(conn)  # died while idle (cut by the watchdog, or the server went away)
                return self._take()
            self._watchdog.watch(conn)
        return conn

    def _checkout(self) -> Any:
        try:
            return self._idle.pop()
        except IndexError:
            pass
        deadline = time.monotonic() + self._timeout
        with self._cond:
            self._waiting += 1
            try:
                while True:
                    try:
                        return self._idle.pop()
                    except IndexError:
                        pass
                    if self._opened < self._size:
                        self._opened += 1
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise DatabaseUnavailable(f"No database connection came free within {self._timeout:g} s.")
                    self._cond.wait(timeout=min(left, 1.0))
            finally:
                self._waiting -= 1
        try:
            return self._connect()
        except BaseException:
            self._lost()
            raise

    def _give_back(self, conn: Any) -> None:
        if self._watchdog is not None:
            self._watchdog.release(conn)
            if getattr(conn, "broken", False) or getattr(conn, "closed", False):
                self.discard(conn)
                return
        self._idle.append(conn)
        if self._waiting:
            with self._cond:
                self._cond.notify()

    def _lost(self) -> None:
        with self._cond:
            self._opened -= 1
            self._cond.notify()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        conn = self._take()
        try:
            yield conn
        except BaseException:
            # The caller's transaction is rolled back; a connection that cannot is dropped.
            try:
                conn.rollback()
            except Exception:
                self.discard(conn)
                raise
            self._give_back(conn)
            raise
        self._give_back(conn)

    def close(self) -> None:
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                return
            with contextlib.suppress(Exception):
                conn.close()
            with self._cond:
                self._opened -= 1


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
        (`metering._pg_admit_batch`), so no plan of it goes stale as tables grow, and planning it
        afresh would cost more server time than running it."""
        options = f"{RAW_PG_PLANS if custom_plans else ''} {self._pg_options}".strip()
        return {"autocommit": True, "options": options, **self.timeouts.libpq()}

    def async_pool(self, size: int = 4) -> Any:
        """PostgreSQL: a pool of asyncio connections like `gate`'s, for the gate's one-statement
        admissions on an event loop (`MeteringStore.open_sessions_kept_async`); the caller opens
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
