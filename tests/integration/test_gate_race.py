"""Issue 13, finding 1, at random: three processes burst admissions at one tenant while its limit is
lowered mid-burst, 20 rounds. The order in which the burst and the change really went is logged
by triggers (under the counter row's lock on PostgreSQL, under the write lock on SQLite); whatever
counted after the change must stay within the new limit (or the count the change found)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

from agentbilling.client import Billing
from agentbilling.domain.plans import Terms
from tests.support.service import START

ON_POSTGRES = os.environ.get("AGENTBILLING_TEST_DATABASE_URL", "").startswith("postgres")
CHILD = Path(__file__).with_name("race_child.py")
ROUNDS = 20
PER_PROCESS = 60

# kind: "count" (a counter row written), "fence" (PostgreSQL: a writer's trigger cleared the row's
# checked_revision, under the row's lock, so in the order of the row's lock), "change" (the
# subscription row written).
PG_LOG = [
    "CREATE TABLE IF NOT EXISTS test_gate_log (seq bigserial, tenant_id text, billable bigint, kind text)",
    "CREATE OR REPLACE FUNCTION test_gate_log() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF TG_TABLE_NAME = 'subscriptions' THEN"
    "  INSERT INTO test_gate_log (tenant_id, billable, kind) VALUES (NEW.tenant_id, NULL, 'change');"
    " ELSE INSERT INTO test_gate_log (tenant_id, billable, kind) VALUES (NEW.tenant_id, NEW.billable_sessions,"
    "  CASE WHEN TG_OP = 'UPDATE' AND NEW.billable_sessions = OLD.billable_sessions"
    "  AND (to_jsonb(NEW) ->> 'checked_revision') IS NULL THEN 'fence' ELSE 'count' END);"
    " END IF; RETURN NULL; END $$",
    "DROP TRIGGER IF EXISTS test_gate_log ON usage_counters",
    "DROP TRIGGER IF EXISTS test_gate_log ON subscriptions",
    "CREATE TRIGGER test_gate_log AFTER INSERT OR UPDATE ON usage_counters FOR EACH ROW"
    " EXECUTE FUNCTION test_gate_log()",
    "CREATE TRIGGER test_gate_log AFTER UPDATE ON subscriptions FOR EACH ROW EXECUTE FUNCTION test_gate_log()",
]
SQLITE_LOG = [
    "CREATE TABLE IF NOT EXISTS test_gate_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id TEXT,"
    " billable INTEGER, kind TEXT)",
    "CREATE TRIGGER IF NOT EXISTS test_gate_count AFTER UPDATE ON usage_counters BEGIN"
    " INSERT INTO test_gate_log (tenant_id, billable, kind) VALUES (NEW.tenant_id, NEW.billable_sessions, 'count');"
    " END",
    "CREATE TRIGGER IF NOT EXISTS test_gate_count_new AFTER INSERT ON usage_counters BEGIN"
    " INSERT INTO test_gate_log (tenant_id, billable, kind) VALUES (NEW.tenant_id, NEW.billable_sessions, 'count');"
    " END",
    "CREATE TRIGGER IF NOT EXISTS test_gate_change AFTER UPDATE ON subscriptions BEGIN"
    " INSERT INTO test_gate_log (tenant_id, billable, kind) VALUES (NEW.tenant_id, NULL, 'change'); END",
]
PG_UNLOG = ["DROP TRIGGER IF EXISTS test_gate_log ON usage_counters",
            "DROP TRIGGER IF EXISTS test_gate_log ON subscriptions", "DROP TABLE IF EXISTS test_gate_log"]
SQLITE_UNLOG = ["DROP TRIGGER IF EXISTS test_gate_count", "DROP TRIGGER IF EXISTS test_gate_count_new",
                "DROP TRIGGER IF EXISTS test_gate_change", "DROP TABLE IF EXISTS test_gate_log"]


def execute(billing: Billing, statements: list[str]) -> None:
    with billing.db.write() as conn:
        for s in statements:
            conn.execute(text(s))


def check(log: list[tuple[int | None, str]], new_limit: int) -> None:
    """Nothing counted after the change passes the new limit (or the count the change found). The
    change's place: where its fence took the counter row (PostgreSQL, once writers take part in
    the row's order), else where it wrote the subscription row."""
    fences = [i for i, (_, kind) in enumerate(log) if kind == "fence"]
    changes = [i for i, (_, kind) in enumerate(log) if kind == "change"]
    assert changes, log
    at = fences[-1] if fences else changes[-1]  # the limit lowered mid-burst: the last change
    at_change = max([n for n, kind in log[:at] if kind == "count" and n is not None], default=0)
    after = [n for n, kind in log[at + 1:] if kind == "count" and n is not None]
    assert all(n <= max(at_change, new_limit) for n in after), (new_limit, at_change, log)


def test_gate_race_three_processes_lower_the_limit_mid_burst(billing: Billing, database_url: str) -> None:
    execute(billing, PG_LOG if ON_POSTGRES else SQLITE_LOG)
    children = [subprocess.Popen([sys.executable, str(CHILD), database_url, "8", START.isoformat()],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(3)]
    rng = random.Random(13)
    over_before = 0
    mid_burst = 0  # rounds where the change landed before the burst was over
    try:
        for c in children:
            assert c.stdout is not None and c.stdout.readline().strip() == "ready"
        for rnd in range(ROUNDS):
            tenant = f"t{rnd}"
            billing.create_tenant(tenant, tenant, f"b@{tenant}.test")
            key = billing.create_api_key(tenant).key
            billing.put_subscription(tenant, "enterprise", Terms(base_session_limit=1000, max_session_limit=1000))
            for n, c in enumerate(children):  # warm: each process keeps the standing (one statement path)
                assert c.stdin is not None and c.stdout is not None
                c.stdin.write(f"go {key} w{n} 1\n")
                c.stdin.flush()
                assert c.stdout.readline().startswith("done 1 ")
            for n, c in enumerate(children):
                assert c.stdin is not None
                c.stdin.write(f"go {key} r{n} {PER_PROCESS}\n")
                c.stdin.flush()
            # Mid-burst: once some of it has counted, after a random pause, to a limit a little
            # above what it has counted so far.
            deadline = time.monotonic() + 10
            while (used := billing.metering.standing_and_usage(tenant, billing.now())[2]) < 3 + 5:
                assert time.monotonic() < deadline
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.01))
            new_limit = used + rng.randint(0, 12)
            billing.set_session_limit(tenant, new_limit)
            refused = 0
            for c in children:
                assert c.stdout is not None
                done = c.stdout.readline().split()
                assert done and done[0] == "done", c.stderr.read() if c.stderr else ""
                refused += int(done[2])
            with billing.db.read() as conn:
                log = [(row[0], row[1]) for row in conn.execute(
                    text("SELECT billable, kind FROM test_gate_log WHERE tenant_id = :t ORDER BY seq"),
                    {"t": tenant})]
            used = billing.metering.standing_and_usage(tenant, billing.now())[2]
            over_before += used > new_limit
            check(log, new_limit)
            mid_burst += refused > 0  # the old limit (1000) refuses none: the change came mid-burst
    finally:
        for c in children:
            if c.stdin is not None:
                c.stdin.close()
            try:
                c.wait(timeout=10)
            except subprocess.TimeoutExpired:
                c.kill()
        execute(billing, PG_UNLOG if ON_POSTGRES else SQLITE_UNLOG)
    print(f"{over_before} of {ROUNDS} rounds ended past the new limit through admissions before the change; "
          f"in {mid_burst} the change landed mid-burst")
    assert mid_burst >= ROUNDS // 4  # the change did land mid-burst, where it can go wrong
