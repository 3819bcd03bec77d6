"""A recorded admission survives a crash of the process (R4 and the storage's durability).

A child process admits sessions from several threads and reports each admitted id once
open_session has returned; it is killed with SIGKILL in the middle of its loop, several times
over on the same database. The parent then reopens the database: every reported admission is
stored and counted, and the counter equals the stored sessions: nothing lost, nothing counted
twice, no half-done admission left behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from agentbilling.client import connect
from agentbilling.clock import TestClock
from agentbilling.settings import Settings
from agentbilling.storage.tables import sessions, usage_counters
from tests.support.service import START

CHILD = Path(__file__).with_name("crash_child.py")
THREADS = 4
TENANT = "crash"


class Child:
    """The child process and a thread that reads its report lines as they come."""

    def __init__(self, database_url: str, prefix: str, create: bool, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), database_url, TENANT, prefix, str(THREADS), START.isoformat(),
             "1" if create else "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(CHILD.parents[2]),
            env={**os.environ, **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def admitted(self) -> list[str]:
        return [line.split()[1] for line in list(self.lines) if line.startswith("admitted ")]

    def kill_after(self, admissions: int, timeout: float = 60) -> None:
        """Wait (a child's output, not business time) until it reported enough, then SIGKILL it mid-loop."""
        deadline = time.monotonic() + timeout
        while len(self.admitted()) < admissions:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"the child stopped or stalled early: {self.lines[-5:]} {err}")
            time.sleep(0.005)
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL
        self._reader.join(timeout=30)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


ON_POSTGRES = os.environ.get("AGENTBILLING_TEST_DATABASE_URL", "").startswith("postgres")
postgres_only = pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL only (AGENTBILLING_TEST_DATABASE_URL)")


@pytest.mark.parametrize("child_env", [
    pytest.param({}, id="default durability"),
    # PostgreSQL answering commits before their flush still keeps them through a crash of this process.
    pytest.param({"AGENTBILLING_PG_SYNCHRONOUS_COMMIT": "off"}, id="pg synchronous_commit off",
                 marks=postgres_only),
])
def test_admissions_reported_by_a_killed_process_are_stored_and_counted_exactly(database_url: str, child_env):
    reported: list[str] = []
    # Three lives on the same database, each killed at a different point of its loop;
    # the later ones start on whatever the earlier crash left behind.
    for life, admissions in enumerate([150, 260, 90]):
        child = Child(database_url, prefix=f"life{life}", create=life == 0, env=child_env)
        child.kill_after(admissions)
        ids = child.admitted()
        assert len(ids) >= admissions
        assert not [line for line in child.lines if line.startswith("unexpected")], child.lines[:5]
        reported += ids
    assert len(set(reported)) == len(reported)

    settings = Settings(database_url=database_url, secret_key="crash-test", test_clock=True)
    billing = connect(settings, clock=TestClock(START), upgrade=False)
    try:
        with billing.db.read() as conn:
            rows = conn.execute(
                select(sessions.c.id, sessions.c.billable_sessions).where(sessions.c.tenant_id == TENANT)
            ).all()
            counters = conn.execute(
                select(usage_counters.c.billable_sessions).where(usage_counters.c.tenant_id == TENANT)
            ).scalars().all()
            all_sessions = conn.execute(select(func.count()).select_from(sessions)).scalar_one()
        stored = {r.id: r.billable_sessions for r in rows}

        # Nothing lost: every admission the child saw returned is stored, with its first unit.
        missing = set(reported) - set(stored)
        assert not missing, f"{len(missing)} reported admissions were lost, e.g. {sorted(missing)[:5]}"
        assert all(units == 1 for units in stored.values())
        assert all_sessions == len(stored)  # nothing stored elsewhere
        # Committed but not yet reported when the kill came: at most one per thread per life.
        assert len(stored) - len(reported) <= THREADS * 3
        assert all(re.fullmatch(rf"life[0-2]-[0-{THREADS - 1}]-\d+", sid) for sid in stored)

        # Nothing double-counted, nothing half-done: one counter, equal to the stored units.
        assert counters == [len(stored)]
        view = billing.billing_view(TENANT)
        assert view.cards[0].sessions_count == len(stored)
        assert view.session_limit is not None and view.session_limit.used == len(stored)

        # The service carries on from there: a reported id replays without counting again,
        # a new id is admitted and counted once.
        again = billing.open_session(TENANT, reported[0], agent_id="agent-1", direction="inbound")
        assert again.replay and again.session is not None and again.session.id == reported[0]
        fresh = billing.open_session(TENANT, "after-the-crash", agent_id="agent-1", direction="inbound")
        assert fresh.session is not None and not fresh.replay
        assert billing.billing_view(TENANT).cards[0].sessions_count == len(stored) + 1
    finally:
        billing.close()


@postgres_only
@pytest.mark.parametrize("setting", [None, "off", "on"])
def test_the_postgresql_durability_setting_reaches_every_connection_of_the_service(database_url: str, setting):
    """`AGENTBILLING_PG_SYNCHRONOUS_COMMIT` holds for the SQLAlchemy engine, the gate's raw
    connections and its asyncio ones alike; unset, each keeps the server's own setting."""
    import asyncio

    import psycopg

    billing = connect(Settings(database_url=database_url, secret_key="x", pg_synchronous_commit=setting),
                      clock=TestClock(START), upgrade=False)
    try:
        with psycopg.connect(billing.db.conninfo()) as plain:
            server_default = plain.execute("SHOW synchronous_commit").fetchone()[0]
        with billing.db.read() as conn:
            engine_value = conn.execute(text("SHOW synchronous_commit")).scalar_one()
        with billing.db.raw.connection() as raw:
            raw_value = raw.execute("SHOW synchronous_commit").fetchone()[0]
            raw_plans = raw.execute("SHOW plan_cache_mode").fetchone()[0]

        async def on_the_loop() -> str:
            pool = billing.gate_pool()
            await pool.open()
            try:
                async with pool.connection() as aconn:
                    return (await (await aconn.execute("SHOW synchronous_commit")).fetchone())[0]
            finally:
                await pool.close()

        expected = setting or server_default
        assert (engine_value, raw_value, asyncio.run(on_the_loop())) == (expected, expected, expected)
        assert raw_plans == "force_custom_plan"  # kept beside it
    finally:
        billing.close()


def test_the_postgresql_durability_setting_is_checked():
    assert Settings(pg_synchronous_commit="off").pg_synchronous_commit == "off"
    with pytest.raises(ValueError, match="pg_synchronous_commit"):
        Settings(pg_synchronous_commit="local")
