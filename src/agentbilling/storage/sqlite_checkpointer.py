"""SQLite's WAL checkpoints, moved off the requests onto a thread of their own."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from typing import Any

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

