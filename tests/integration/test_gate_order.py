"""Issue 13, finding 1: a stale limit or key under a lock wait (PostgreSQL).

An admission reads the cap and the key, then waits for its tenant's usage counter row. These tests
make that wait happen on purpose: a second connection holds the counter row (SELECT ... FOR
UPDATE); a first wave of admissions queues behind it; the limit is lowered, the key revoked or the
plan changed through the service; a second wave queues; the row is released. What must hold
(R4, README "Why the gate never over-admits"):
- if the change was answered while the row was still held, every admission was answered after
  it, so none may follow the old state: nothing admitted past the new limit, nothing on the key;
- otherwise the change waited for the admissions ahead of it (the first wave, in flight, may follow
  the old state), and the second wave, queued behind the change, follows it.
Each path of the gate: the one statement (standing kept), the transaction (standing not kept:
a process whose one-statement path is off), and group commit (batches, on both).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from itertools import count

import psycopg
import pytest
from sqlalchemy.engine import make_url

from agentbilling.client import Billing, connect
from agentbilling.domain.plans import Terms

ON_POSTGRES = os.environ.get("AGENTBILLING_TEST_DATABASE_URL", "").startswith("postgres")
pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL only: SQLite's write lock is taken at BEGIN")

USED = 10  # sessions admitted before the race
WAVE = 5  # admission threads per wave
TENANT = "acme"


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"db_pool_size": 16})


@pytest.fixture
def second(settings, clock) -> Iterator[Billing]:
    """Another process's service on the same database, whose admissions take the transaction path."""
    service = connect(settings, clock=clock, upgrade=False)
    service.metering.one_statement = False  # every admission is a transaction
    yield service
    service.close()


class CounterHold:
    """Holds the tenant's usage counter rows from a connection of its own until released."""

    def __init__(self, database_url: str) -> None:
        self.conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.conn = psycopg.connect(self.conninfo)
        self.watch = psycopg.connect(self.conninfo, autocommit=True)

    def hold(self, period: str) -> None:
        """Lock the counter row of the period admissions count in, and log its updates from now on."""
        self.period = period
        self.start_log()
        rows = self.conn.execute("SELECT period FROM usage_counters WHERE tenant_id = %s AND period = %s FOR UPDATE",
                                 (TENANT, period))
        assert rows.fetchall(), "the tenant has a counter row for the period"

    def waiting(self) -> int:
        """Backends of this database waiting for a lock (on the held row, or behind those who wait)."""
        (n,) = self.watch.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
        return n

    def start_log(self) -> None:
        """Log every update of a counter row, in the order they took the row's lock (a sequence,
        drawn while the updater holds the row, which it keeps until it commits): the order in
        which admissions and writers really went."""
        with psycopg.connect(self.conninfo, autocommit=True) as c:
            c.execute("CREATE TABLE IF NOT EXISTS test_counter_log (seq bigserial, billable bigint, checked bigint)")
            c.execute("TRUNCATE test_counter_log")
            c.execute("CREATE OR REPLACE FUNCTION test_counter_log() RETURNS trigger LANGUAGE plpgsql AS $$"
                      " BEGIN INSERT INTO test_counter_log (billable, checked)"
                      " VALUES (NEW.billable_sessions, (to_jsonb(NEW) ->> 'checked_revision')::bigint);"
                      " RETURN NULL; END $$")
            c.execute("DROP TRIGGER IF EXISTS test_counter_log ON usage_counters")
            c.execute(f"CREATE TRIGGER test_counter_log AFTER UPDATE ON usage_counters FOR EACH ROW"
                      f" WHEN (NEW.period = '{self.period}') EXECUTE FUNCTION test_counter_log()")

    def log(self) -> list[tuple[int, int | None]]:
        """(count, checked_revision) after each update of the held row, in lock order."""
        return self.watch.execute("SELECT billable, checked FROM test_counter_log ORDER BY seq").fetchall()

    def stop_log(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as c:
            c.execute("DROP TRIGGER IF EXISTS test_counter_log ON usage_counters")
            c.execute("DROP TABLE IF EXISTS test_counter_log")

    def release(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()
        self.stop_log()
        self.watch.close()


@pytest.fixture
def hold(database_url: str) -> Iterator[CounterHold]:
    h = CounterHold(database_url)
    yield h
    h.close()


def used(billing: Billing) -> int:
    return billing.metering.standing_and_usage(TENANT, billing.now())[2]


ids = (f"s{i}" for i in count())


def paid_tenant(billing: Billing) -> str:
    """A paid tenant with USED sessions and a limit far above them; returns its API key. The
    admissions also leave the tenant's standing kept in `billing`."""
    billing.create_tenant(TENANT, "Acme", "billing@acme.test")
    key = billing.create_api_key(TENANT).key
    billing.put_subscription(TENANT, "starter")
    for _ in range(USED):
        assert billing.open_session_for_key(key, next(ids), agent_id="a", direction="inbound").session is not None
    assert used(billing) == USED
    return key


# The ways through the gate: each admits one request (a list of one) or a batch, and returns how
# many were admitted, or None if the key was not live.
def one_statement(billing: Billing, second: Billing, key: str) -> int | None:
    result = billing.open_session_for_key(key, next(ids), agent_id="a", direction="inbound")
    return None if result is None else int(result.session is not None)


def transaction(billing: Billing, second: Billing, key: str) -> int | None:
    result = second.open_session_for_key(key, next(ids), agent_id="a", direction="inbound")
    return None if result is None else int(result.session is not None)


def _batch(service: Billing, key: str) -> int | None:
    requests = [Billing.admission_request(next(ids), "a", "inbound") for _ in range(3)]
    answers = service.open_sessions_for_key(key, requests)
    if all(a is None for a in answers):
        return None
    assert not any(isinstance(a, Exception) for a in answers), answers
    return sum(1 for a in answers if a is not None and a.session is not None)


def group_commit_one_statement(billing: Billing, second: Billing, key: str) -> int | None:
    return _batch(billing, key)


def group_commit_transaction(billing: Billing, second: Billing, key: str) -> int | None:
    return _batch(second, key)


PATHS = [one_statement, transaction, group_commit_one_statement, group_commit_transaction]


class Race:
    def __init__(self, billing: Billing, second: Billing, key: str, hold: CounterHold,
                 admit: Callable[[Billing, Billing, str], int | None]) -> None:
        self.billing, self.second, self.key, self.hold, self.admit = billing, second, key, hold, admit
        self.pool = ThreadPoolExecutor(max_workers=2 * WAVE + 1)

    def wave(self, already_waiting: int) -> list[Future]:
        """WAVE admissions, returned once each waits for the row (or was answered without waiting,
        as an admission on a key revoked before it started is)."""
        futures = [self.pool.submit(self.admit, self.billing, self.second, self.key) for _ in range(WAVE)]
        deadline = time.monotonic() + 10
        while self.hold.waiting() < already_waiting + WAVE - sum(f.done() for f in futures):
            assert time.monotonic() < deadline, f"{self.hold.waiting()} waiting for a lock"
            time.sleep(0.02)
        return futures

    def run(self, change: Callable[[], object]) -> tuple[bool, list[int | None], list[int | None]]:
        """Hold the row, queue a wave, make the change, queue a second wave, release. Returns
        whether the change was answered while the row was held, and each wave's results."""
        self.hold.hold(self.billing.metering.standing_and_usage(TENANT, self.billing.now())[1].counter)
        first = self.wave(0)
        changing = self.pool.submit(change)
        deadline = time.monotonic() + 2
        while not changing.done() and self.hold.waiting() < WAVE + 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        if not changing.done():
            time.sleep(0.2)  # a change that waits for the row waits for good: let it be seen so
        answered_while_held = changing.done()
        second = self.wave(WAVE + (0 if answered_while_held else 1))
        self.hold.release()
        changing.result(timeout=30)
        results = [f.result(timeout=30) for f in first], [f.result(timeout=30) for f in second]
        self.pool.shutdown()
        return answered_while_held, *results


def check_order(answered_while_held: bool, hold: CounterHold, before: int, new_cap: int | None) -> None:
    """What R4 asks of the race, from the order in which the held row was really updated.
    `new_cap` None: the key was revoked (no admission may count on it after the revocation)."""
    log = hold.log()
    counts = [n for n, _ in log]
    if answered_while_held:  # every admission was answered after the change: all follow it
        assert max(counts, default=before) <= (before if new_cap is None else max(before, new_cap)), log
        return
    # The change waited for the row: it commits in the row's order, where it cleared the row's check
    # (the only update that leaves it NULL). Whatever took the row after it follows it.
    (change,) = [i for i, (_, checked) in enumerate(log) if checked is None]
    at_change = counts[change]
    later = counts[change + 1:]
    if new_cap is None:
        assert all(n == at_change for n in later), log
    else:
        assert all(n <= max(at_change, new_cap) for n in later), log


@pytest.mark.parametrize("admit", PATHS)
def test_stale_limit_under_a_lock_wait(billing: Billing, second: Billing, hold: CounterHold, admit) -> None:
    key = paid_tenant(billing)
    admit(billing, second, key)  # the path's own standing is kept now (the second service's too)
    before = used(billing)
    answered_while_held, first, then = Race(billing, second, key, hold, admit).run(
        lambda: billing.set_session_limit(TENANT, before + 2))
    assert billing.billing_view(TENANT).session_limit.limit == before + 2  # read back
    assert None not in first + then
    assert used(billing) == before + sum(first) + sum(then)
    check_order(answered_while_held, hold, before, before + 2)


@pytest.mark.parametrize("admit", PATHS)
def test_stale_plan_under_a_lock_wait(billing: Billing, second: Billing, hold: CounterHold, admit) -> None:
    """The change goes through Lifecycle (`put_subscription`): the new plan's own limit is lower."""
    key = paid_tenant(billing)
    billing.put_subscription(TENANT, "enterprise", Terms(base_session_limit=1000, max_session_limit=1000))
    admit(billing, second, key)
    before = used(billing)
    answered_while_held, first, then = Race(billing, second, key, hold, admit).run(
        lambda: billing.put_subscription(
            TENANT, "enterprise", Terms(base_session_limit=before + 2, max_session_limit=before + 2)))
    assert billing.billing_view(TENANT).session_limit.limit == before + 2
    assert used(billing) == before + sum(first) + sum(then)
    check_order(answered_while_held, hold, before, before + 2)


@pytest.mark.parametrize("admit", PATHS)
def test_revoked_key_under_a_lock_wait(billing: Billing, second: Billing, hold: CounterHold, admit) -> None:
    paid_tenant(billing)
    other = billing.create_api_key(TENANT)
    key = other.key
    admit(billing, second, key)
    before = used(billing)
    answered_while_held, first, then = Race(billing, second, key, hold, admit).run(
        lambda: billing.revoke_api_key(TENANT, other.id))
    assert billing.tenant_for_api_key(key) is None
    if answered_while_held:
        assert first + then == [None] * (2 * WAVE), (first, then)
    assert used(billing) == before + sum(r or 0 for r in first + then)
    check_order(answered_while_held, hold, before, None)


# The plan's end, written by the worker at its moment: a cancellation that takes effect at the
# period's end, and a lapse (the period in which a payment failed ends). Admissions queued before
# the moment are in flight and may count; the worker's write waits for them; every admission
# answered after the end follows it, on every path.
def sandbox_tenant(billing: Billing, clock, *, failing_card: bool) -> tuple[str, object]:
    billing.create_tenant(TENANT, "Acme", "billing@acme.test")
    key = billing.create_api_key(TENANT).key
    co = billing.checkout(TENANT, "starter")
    billing.sandbox_complete_checkout(co.id, "4242424242424242")
    if failing_card:
        billing.sandbox_add_payment_method(TENANT, "4000000000000341")  # the renewal's charge fails
        renewal = clock.now().replace(month=2, day=28)
        clock.set(renewal)
        billing.run_due()
        assert billing.billing_view(TENANT).cards[0].badge.value == "Payment issue"
    else:
        billing.sandbox_cancel(TENANT)
    for _ in range(USED):
        assert billing.open_session_for_key(key, next(ids), agent_id="a", direction="inbound").session is not None
    period = billing.metering.standing_and_usage(TENANT, billing.now())[1]
    assert period.period is not None
    return key, period.period.end


def run_the_end(billing: Billing, second: Billing, hold: CounterHold, clock, admit, key: str, ends_at) -> None:
    before = used(billing)

    def end() -> None:
        clock.set(ends_at + timedelta(minutes=1))
        billing.run_due()

    answered_while_held, first, then = Race(billing, second, key, hold, admit).run(end)
    assert not answered_while_held  # the worker's write waited for the admissions ahead of it
    assert then == [0] * WAVE, then  # answered after the end: all refused, none counted
    counts = [n for n, _ in hold.log()]  # the ended period's row, in the order it was taken
    assert max(counts, default=before) == before + sum(first), counts
    assert billing.billing_view(TENANT).cards[0].badge.value not in ("Active subscription", "Payment issue")


@pytest.mark.parametrize("admit", PATHS)
def test_cancellation_at_the_period_end_under_a_lock_wait(billing: Billing, second: Billing, hold: CounterHold,
                                                            clock, admit) -> None:
    key, ends_at = sandbox_tenant(billing, clock, failing_card=False)
    admit(billing, second, key)
    run_the_end(billing, second, hold, clock, admit, key, ends_at)


@pytest.mark.parametrize("admit", PATHS)
def test_lapse_under_a_lock_wait(billing: Billing, second: Billing, hold: CounterHold, clock, admit) -> None:
    key, ends_at = sandbox_tenant(billing, clock, failing_card=True)
    admit(billing, second, key)
    run_the_end(billing, second, hold, clock, admit, key, ends_at)
