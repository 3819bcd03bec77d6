"""The raw driver connections of the hot path: a small LIFO pool, and a watchdog that cuts hung ones."""

from __future__ import annotations

import collections
import contextlib
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from agentbilling.storage.timeouts import DatabaseUnavailable


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

