"""The gate's transactions on pooled raw connections: read-write (committed or rolled back) and read-only."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from agentbilling.storage.db import Database


class WriteTransaction:
    """One read-write transaction on a pooled raw connection: committed on success, else rolled back.

    A plain class rather than a generator context manager: this wraps every admission.
    """

    __slots__ = ("db", "begin", "conn")

    def __init__(self, db: Database, begin: str | None) -> None:
        self.db = db
        self.begin = begin

    def __enter__(self) -> Any:
        self.db.write_lock.__enter__()
        try:
            self.conn = self.db.raw.take()
            cur = self.conn.cursor()
            if self.begin:
                cur.execute(self.begin)
            return cur
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        conn = getattr(self, "conn", None)
        try:
            if conn is None:
                return
            if exc_type is None:
                try:
                    conn.commit()
                except BaseException:
                    self._roll_back(conn)
                    raise
                self.db.raw.give_back(conn)
            else:
                self._roll_back(conn)
        finally:
            self.db.write_lock.__exit__(None, None, None)

    def _roll_back(self, conn: Any) -> None:
        try:
            conn.rollback()
        except Exception:
            self.db.raw.discard(conn)  # a connection that cannot roll back is not reused
        else:
            self.db.raw.give_back(conn)


@contextlib.contextmanager
def read_transaction(db: Database, begin: str | None) -> Iterator[Any]:
    """A cursor for reads, rolled back at the end; `begin` (PostgreSQL) gives the block one snapshot."""
    with db.raw.connection() as conn:
        cur = conn.cursor()
        if begin:
            cur.execute(begin)
        try:
            yield cur
        finally:
            conn.rollback()
