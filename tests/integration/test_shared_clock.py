"""Issue 13, finding 6: the test clock is shared. Every process, `agentbilling serve` and workers
alike, follows the time kept in the database, so an advance through one holds in all of them
within a second."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import httpx
import pytest

from agentbilling.client import Billing, connect
from agentbilling.settings import Settings
from agentbilling.worker import Worker
from tests.support.service import OPERATOR_KEY, operator_headers


def within_a_second(read: Callable[[], datetime], expected: datetime) -> None:
    deadline = time.monotonic() + 1.0
    while (seen := read()) != expected:
        assert time.monotonic() < deadline, f"still {seen}, expected {expected}"
        time.sleep(0.05)


@pytest.fixture
def processes(settings: Settings) -> Iterator[list[Billing]]:
    """Two services on one database, each with the test clock it loads from there (as processes)."""
    made = [connect(settings, upgrade=False) for _ in range(2)]
    yield made
    for b in made:
        b.close()


@pytest.fixture
def served(settings: Settings) -> Iterator[httpx.Client]:
    """`agentbilling serve` in a process of its own, on the same database and test clock."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "AGENTBILLING_DATABASE_URL": settings.database_url, "AGENTBILLING_TEST_CLOCK": "1",
           "AGENTBILLING_OPERATOR_KEY": OPERATOR_KEY,
           "AGENTBILLING_SECRET_KEY": "test-secret-key-" + "k" * 32}  # serve takes 32 characters or more
    proc = subprocess.Popen([sys.executable, "-m", "agentbilling.cli", "serve", "--port", str(port), "--no-worker"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, headers=operator_headers()) as c:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if c.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
                time.sleep(0.1)
            yield c
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_test_clock_is_shared_by_processes_and_workers(processes: list[Billing], served: httpx.Client) -> None:
    a, b = processes
    assert a.now() == b.now()

    def served_now() -> datetime:
        return datetime.fromisoformat(served.get("/v1/clock").json()["now"].replace("Z", "+00:00"))

    moved = a.advance_clock(seconds=3 * 86400)
    within_a_second(b.now, moved)
    within_a_second(served_now, moved)
    Worker(b, interval=60).run_once()  # a worker pass runs at the shared time
    assert b.now() == moved

    r = served.post("/v1/clock/advance", json={"seconds": 3600})  # and the other way round
    assert r.status_code == 200, r.text
    later = moved + timedelta(hours=1)
    within_a_second(a.now, later)
    within_a_second(b.now, later)
    # An advance starts from the shared time, not a process's last reading; time never goes back.
    assert b.advance_clock(seconds=60) == later + timedelta(seconds=60)
    within_a_second(a.now, later + timedelta(seconds=60))
