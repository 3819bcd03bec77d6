"""Issue 13, finding 4: `serve` and `worker` wait for the database at start, retrying with a pause
that doubles up to 30 s, one log line per try and no traceback, then migrate and go on."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.fakes.db_proxy import DbProxy

ON_POSTGRES = os.environ.get("AGENTBILLING_TEST_DATABASE_URL", "").startswith("postgres")
WAITING = "the database does not answer yet"


class Started:
    """`agentbilling worker --once` in a process of its own, its log lines read as they come."""

    def __init__(self, database_url: str) -> None:
        env = {**os.environ, "AGENTBILLING_DATABASE_URL": database_url, "AGENTBILLING_OPERATOR_KEY": "op"}
        self.proc = subprocess.Popen([sys.executable, "-m", "agentbilling.cli", "worker", "--once"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for_tries(self, n: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while sum(WAITING in line for line in self.lines) < n:
            assert self.proc.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, "".join(self.lines)
            time.sleep(0.05)

    def finish(self, timeout: float = 30) -> str:
        assert self.proc.wait(timeout=timeout) == 0, "".join(self.lines)
        time.sleep(0.1)
        return "".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def started() -> Iterator[list[Started]]:
    made: list[Started] = []
    yield made
    for s in made:
        s.kill()


def check_log(out: str, tries: int) -> None:
    waiting = [line for line in out.splitlines() if WAITING in line]
    assert len(waiting) >= tries, out
    assert "trying again in 1s" in waiting[0] and "trying again in 2s" in waiting[1], waiting
    assert "Traceback" not in out, out
    assert "agentbilling worker: database" in out  # it went on: migrated, then the pass


def test_the_worker_waits_for_a_sqlite_file_that_cannot_be_opened_yet(tmp_path: Path, started) -> None:
    folder = tmp_path / "volume-mounted-late"
    s = Started(f"sqlite:///{folder}/agentbilling.db")
    started.append(s)
    s.wait_for_tries(2)
    folder.mkdir()
    check_log(s.finish(), 2)
    assert (folder / "agentbilling.db").exists()


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL only (AGENTBILLING_TEST_DATABASE_URL)")
def test_the_worker_waits_for_postgresql_then_migrates(database_url: str, started) -> None:
    url = make_url(database_url)
    proxy = DbProxy((url.host or "127.0.0.1", url.port or 5432))
    try:
        proxy.cut()  # refuses every connection: the database is not up yet
        through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        s = Started(through)
        started.append(s)
        s.wait_for_tries(2)
        proxy.heal()
        check_log(s.finish(), 2)
    finally:
        proxy.close()
