"""The service under test: the operator's key, the test clock's start, the database backend, a live server."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import UTC, datetime

import uvicorn

OPERATOR_KEY = "op-test-key"
START = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)  # a Jan 31 anchor exercises short months


def backend() -> str:
    """The database of this run: PostgreSQL if AGENTBILLING_TEST_DATABASE_URL names one, else SQLite."""
    url = os.environ.get("AGENTBILLING_TEST_DATABASE_URL", "")
    return "postgresql" if url.startswith("postgres") else "sqlite"


def operator_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {OPERATOR_KEY}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The app served by a real uvicorn on a free port, in a thread of this process."""

    def __init__(self, app) -> None:
        self.config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        sock = self.server.servers[0].sockets[0]
        self.url = "http://127.0.0.1:%d" % sock.getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
