"""Group commit: admissions under one API key decided together in one transaction.

`Billing.open_sessions_for_key` must give every request the answer `open_session_for_key` would
give it alone, in order, and leave the same stored state; api/group_commit.py must gather the
requests that arrive while a batch is in flight, and only those.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from dataclasses import dataclass
from types import SimpleNamespace

import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import make_url

from agentbilling.api.gate.group_commit import GroupCommit
from agentbilling.api.routes import runtime
from agentbilling.client import Billing
from agentbilling.domain.errors import DomainError, SessionIdReused
from agentbilling.domain.gate import Refusal
from agentbilling.domain.metering import Direction
from agentbilling.storage.gate.metering import AdmissionRequest, OpenResult

ON_POSTGRES = os.environ.get("AGENTBILLING_TEST_DATABASE_URL", "").startswith("postgres")
postgres_only = pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL only (AGENTBILLING_TEST_DATABASE_URL)")


def paid(billing: Billing, tenant_id: str, plan: str = "starter", limit: int | None = None) -> str:
    """A tenant on a paid plan (optionally with its own limit); returns an API key."""
    billing.create_tenant(tenant_id, tenant_id.title(), f"billing@{tenant_id}.test")
    billing.put_subscription(tenant_id, plan)
    if limit is not None:
        billing.set_session_limit(tenant_id, limit)
    return billing.create_api_key(tenant_id).key


def req(billing: Billing, session_id: str, direction: str = "inbound", agent: str = "agent-1") -> AdmissionRequest:
    return billing.admission_request(session_id, agent, direction)


def outcome(result: OpenResult | DomainError | None) -> tuple:
    """What a caller of the API sees of an answer."""
    if result is None:
        return ("no key",)
    if isinstance(result, DomainError):
        return ("error", result.code)
    if result.refusal is not None:
        return ("refused", result.refusal.code)
    assert result.session is not None
    return ("replay" if result.replay else "admitted", result.session.id, result.session.billable_sessions)


def stored(billing: Billing, tenant_id: str) -> dict[str, tuple]:
    out, cursor = {}, None
    while True:
        page = billing.list_sessions(tenant_id, cursor=cursor, limit=100)
        out.update({s.id: (s.agent_id, s.direction.value, s.billable_sessions) for s in page.data})
        cursor = page.next_cursor
        if cursor is None:
            return out


def used(billing: Billing, tenant_id: str) -> int:
    return billing.billing_view(tenant_id).cards[0].sessions_count


# -- the store: one transaction for many -------------------------------------------------------

def test_a_batch_is_decided_in_order_as_one_request_after_another(billing: Billing):
    key = paid(billing, "acme", limit=3)
    assert billing.open_session("acme", "old", agent_id="agent-1", direction="inbound").session

    results = billing.open_sessions_for_key(key, [
        req(billing, "new-1"),
        req(billing, "old"),  # stored before: a replay
        req(billing, "new-1"),  # admitted earlier in this batch: a replay of that
        req(billing, "old", direction="outbound"),  # the same id with another direction
        req(billing, "new-2"),  # the last slot under the limit of 3
        req(billing, "new-3"),
        req(billing, "new-2"),  # still a replay once the limit is reached
    ])

    assert [outcome(r) for r in results] == [
        ("admitted", "new-1", 1),
        ("replay", "old", 1),
        ("replay", "new-1", 1),
        ("error", SessionIdReused.code),
        ("admitted", "new-2", 1),
        ("refused", Refusal.SESSION_LIMIT_REACHED.code),
        ("replay", "new-2", 1),
    ]
    assert set(stored(billing, "acme")) == {"old", "new-1", "new-2"}
    assert used(billing, "acme") == 3
    assert not billing.admission("acme").accepting


def test_a_batch_under_a_revoked_key_changes_nothing(billing: Billing):
    key = paid(billing, "acme")
    made = billing.create_api_key("acme")
    billing.revoke_api_key("acme", made.id)
    assert billing.open_sessions_for_key(made.key, [req(billing, "a"), req(billing, "b")]) == [None, None]
    assert stored(billing, "acme") == {}
    assert [outcome(r) for r in billing.open_sessions_for_key(key, [req(billing, "a"), req(billing, "b")])] == [
        ("admitted", "a", 1), ("admitted", "b", 1)]


def test_a_batch_on_an_ended_trial_refuses_new_ids_and_still_replays(billing: Billing):
    billing.create_tenant("trial", "Trial", "billing@trial.test")
    key = billing.create_api_key("trial").key
    assert billing.open_sessions_for_key(key, [req(billing, "early")])[0].session
    billing.advance_clock(seconds=15 * 86400)  # past the 14 days

    results = billing.open_sessions_for_key(key, [req(billing, "late"), req(billing, "early")])

    assert [outcome(r) for r in results] == [("refused", Refusal.SUBSCRIPTION_ENDED.code), ("replay", "early", 1)]
    assert set(stored(billing, "trial")) == {"early"}


def test_answered_only_outbound_sessions_in_a_batch_are_admitted_uncounted(billing: Billing):
    key = paid(billing, "out", plan="outreach", limit=1)
    results = billing.open_sessions_for_key(key, [
        req(billing, "call-1", "outbound"), req(billing, "in-1"), req(billing, "call-2", "outbound"),
        req(billing, "in-2"),
    ])
    # Outbound costs nothing until answered; the one inbound session takes the only slot, then
    # the gate is closed for every kind.
    assert [outcome(r) for r in results] == [
        ("admitted", "call-1", 0), ("admitted", "in-1", 1),
        ("refused", Refusal.SESSION_LIMIT_REACHED.code), ("refused", Refusal.SESSION_LIMIT_REACHED.code),
    ]
    assert used(billing, "out") == 1


_tenants = itertools.count()
_pool = ["a", "b", "c", "d", "e", "f"]
requests_strategy = st.lists(
    st.tuples(st.sampled_from(_pool), st.sampled_from(["inbound", "outbound"]), st.sampled_from(["x", "y"])),
    min_size=2, max_size=12,
)


@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=requests_strategy, limit=st.integers(min_value=1, max_value=6),
       plan=st.sampled_from(["starter", "outreach"]), before=st.lists(st.sampled_from(_pool), max_size=3),
       warm=st.booleans())
def test_a_batch_answers_and_stores_what_the_same_requests_one_by_one_would(
    billing: Billing, requests, limit, plan, before, warm
):
    # warm: on PostgreSQL the batch may then be decided by the one statement, on this thread
    same_as_one_by_one(billing, requests, limit, plan, before, warm=warm,
                       decide=lambda key, asked: billing.open_sessions_for_key(key, asked))


def same_as_one_by_one(billing: Billing, requests, limit, plan, before, *, decide, warm: bool = False) -> None:
    """`decide(key, requests)` answers and stores what the same requests one after another would,
    on two tenants alike: one asked one by one, the other through `decide`. With `warm`, each key
    has admitted a session first, so the service knows its tenant and keeps its standing."""
    n = next(_tenants)
    one_by_one, batched = f"single-{n}", f"batch-{n}"
    keys = {t: paid(billing, t, plan=plan, limit=limit) for t in (one_by_one, batched)}
    for t, key in keys.items():
        if warm:
            assert billing.open_session_for_key(key, "warm", agent_id="x", direction="inbound").session
        for sid in before:  # a few sessions already there, so some requests are replays
            billing.open_session(t, sid, agent_id="x", direction="inbound")
    asked = [req(billing, sid, direction, agent) for sid, direction, agent in requests]

    def alone(r: AdmissionRequest):
        try:
            return billing.open_session_for_key(keys[one_by_one], r.session_id, agent_id=r.agent_id,
                                                direction=r.direction)
        except DomainError as err:
            return err

    expected = [outcome(alone(r)) for r in asked]
    got = [outcome(r) for r in decide(keys[batched], asked)]

    assert got == expected
    assert stored(billing, batched) == stored(billing, one_by_one)
    assert used(billing, batched) == used(billing, one_by_one)


# -- PostgreSQL: what a batch sees of the transactions around it ---------------------------------

@dataclass
class Raw:
    """A plain psycopg connection to the test database, for holding locks from outside the service."""

    conn: psycopg.Connection

    @classmethod
    def open(cls, database_url: str) -> Raw:
        url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        return cls(psycopg.connect(url))


def _in_thread(fn):
    box: dict = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
            box["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, box


def _wait_for_lock_wait(raw: Raw, timeout: float = 10.0) -> None:
    """Until some other backend is waiting on a lock (the batch, behind `raw`'s transaction)."""
    with psycopg.connect(raw.conn.info.dsn, autocommit=True) as watcher:
        for _ in range(int(timeout / 0.02)):
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchone()[0]
            if waiting:
                return
            threading.Event().wait(0.02)
    raise AssertionError("the batch never waited on the lock")


@postgres_only
def test_a_batch_that_waited_for_the_counter_sees_the_session_its_holder_admitted(billing: Billing, database_url):
    """The ids are read after the counter's lock is taken, so a session counted by the transaction
    that held it is a replay, not a new id refused for the limit it used up."""
    key = paid(billing, "acme", limit=2)
    billing.open_session("acme", "first", agent_id="agent-1", direction="inbound")
    counter = billing.metering.standing_and_usage("acme", billing.now())[1].counter
    raw = Raw.open(database_url)
    # Another admission of "shared", as the service does it: counter first, then the session.
    raw.conn.execute("UPDATE usage_counters SET billable_sessions = billable_sessions + 1"
                     " WHERE tenant_id = 'acme' AND period = %s", (counter,))
    raw.conn.execute("INSERT INTO sessions (tenant_id, id, agent_id, direction, answered_only, started_at,"
                     " last_activity_at, billable_sessions) VALUES ('acme', 'shared', 'agent-1', 'inbound',"
                     " false, %s, %s, 1)", (billing.now(), billing.now()))

    thread, box = _in_thread(lambda: billing.open_sessions_for_key(key, [req(billing, "shared"),
                                                                         req(billing, "other")]))
    _wait_for_lock_wait(raw)
    raw.conn.commit()
    thread.join(30)
    raw.conn.close()

    assert "error" not in box, box
    assert [outcome(r) for r in box["result"]] == [
        ("replay", "shared", 1), ("refused", Refusal.SESSION_LIMIT_REACHED.code)]
    assert used(billing, "acme") == 2


@postgres_only
def test_a_batch_that_meets_an_uncounted_admission_of_its_id_runs_one_by_one(billing: Billing, database_url):
    """An outbound session on Answered only is recorded without the counter's lock: a batch that
    inserts the same id meanwhile fails as a whole, keeps nothing, and decides each request alone."""
    key = paid(billing, "out", plan="outreach")
    raw = Raw.open(database_url)
    raw.conn.execute("INSERT INTO sessions (tenant_id, id, agent_id, direction, answered_only, started_at,"
                     " last_activity_at, billable_sessions) VALUES ('out', 'call', 'agent-1', 'outbound',"
                     " true, %s, %s, 0)", (billing.now(), billing.now()))

    thread, box = _in_thread(lambda: billing.open_sessions_for_key(
        key, [req(billing, "in-1"), req(billing, "call", "outbound"), req(billing, "in-2")]))
    _wait_for_lock_wait(raw)  # the batch's INSERT of "call" waits on the uncommitted one
    raw.conn.commit()
    thread.join(30)
    raw.conn.close()

    assert "error" not in box, box
    assert [outcome(r) for r in box["result"]] == [
        ("admitted", "in-1", 1), ("replay", "call", 0), ("admitted", "in-2", 1)]
    assert used(billing, "out") == 2
    assert set(stored(billing, "out")) == {"in-1", "call", "in-2"}


@postgres_only
def test_a_request_that_fails_on_its_own_gets_its_error_as_its_answer(billing: Billing):
    """Run alone (as every request of a batch that fell back is), a request that raises gets the
    error in its place: it neither hides the answers of the requests committed before it nor is
    mistaken for an admission. Here PostgreSQL refuses an id longer than its column, which only a
    caller skipping `admission_request`'s checks can send."""
    key = paid(billing, "acme")
    too_long = AdmissionRequest("x" * 201, "agent-1", Direction.INBOUND)
    (answer,) = billing.open_sessions_for_key(key, [too_long])
    assert isinstance(answer, psycopg.errors.StringDataRightTruncation)
    assert [outcome(r) for r in billing.open_sessions_for_key(key, [req(billing, "ok")])] == [("admitted", "ok", 1)]
    assert used(billing, "acme") == 1


@postgres_only
def test_the_one_statement_admission_is_used_and_checks_the_revision(billing: Billing, monkeypatch):
    """Once a tenant's standing is kept, an admission is one statement; a change to the subscription
    (here, a new limit) gives it a new revision, so the next admission reads it again."""
    key = paid(billing, "acme", limit=2)
    store = billing.metering
    decided_by_one_statement = []
    original = store.admit_by_one_statement

    def watched(*args, **kwargs):
        result = original(*args, **kwargs)
        decided_by_one_statement.append(result is not None)
        return result

    monkeypatch.setattr(store, "admit_by_one_statement", watched)

    assert billing.open_session_for_key(key, "s-1", agent_id="a", direction="inbound").session  # reads the standing
    assert billing.open_session_for_key(key, "s-2", agent_id="a", direction="inbound").session  # one statement
    assert billing.open_session_for_key(key, "s-2", agent_id="a", direction="inbound").replay  # the statement
    # fails on the existing id, changing nothing; the transaction finds the replay
    assert billing.open_session_for_key(key, "s-3", agent_id="a", direction="inbound").refusal  # at the limit
    with billing.db.read() as conn:
        before = conn.execute(text("SELECT revision FROM subscriptions WHERE tenant_id = 'acme'")).scalar_one()
    billing.set_session_limit("acme", 3)
    with billing.db.read() as conn:
        after = conn.execute(text("SELECT revision FROM subscriptions WHERE tenant_id = 'acme'")).scalar_one()
    assert after != before  # a new revision token (random: issue 13, finding 2)
    assert billing.open_session_for_key(key, "s-3", agent_id="a", direction="inbound").session  # the new limit
    assert decided_by_one_statement == [False, True, False, False, False]
    assert used(billing, "acme") == 3


# -- PostgreSQL: a batch in one statement, on the event loop ------------------------------------

def gate(billing: Billing, key: str, requests: list[AdmissionRequest], *, fallback: bool = True):
    """A batch as the HTTP API decides it (`runtime.decide_batch`): in one statement on an asyncio
    connection when that can decide it, else in a transaction on a thread. With `fallback=False`
    only the statement's answer: None when it decided nothing."""

    async def go():
        pool = billing.gate_pool()
        await pool.open()
        try:
            if not fallback:
                return await billing.open_sessions_async(pool, key, requests)
            return await runtime.decide_batch(SimpleNamespace(gate_pool=pool), billing, key, requests)
        finally:
            await pool.close()

    return asyncio.run(go())


def warm(billing: Billing, key: str, tenant_id: str, sid: str | None = None) -> None:
    """One admission under the key: the service now knows the key's tenant and keeps its standing."""
    assert billing.open_sessions_for_key(key, [req(billing, sid or f"warm-{tenant_id}")])[0].replay is False


@postgres_only
def test_new_ids_under_a_known_key_are_admitted_in_one_statement_on_the_event_loop(billing: Billing):
    key = paid(billing, "acme", limit=10)
    warm(billing, key, "acme")

    results = gate(billing, key, [req(billing, f"s-{i}") for i in range(5)], fallback=False)

    assert [outcome(r) for r in results] == [("admitted", f"s-{i}", 1) for i in range(5)]
    assert used(billing, "acme") == 6
    assert set(stored(billing, "acme")) == {"warm-acme", *(f"s-{i}" for i in range(5))}
    # ... and up to the last slot exactly: 4 left, 4 asked.
    assert [outcome(r) for r in gate(billing, key, [req(billing, f"t-{i}") for i in range(4)], fallback=False)] == [
        ("admitted", f"t-{i}", 1) for i in range(4)]
    assert used(billing, "acme") == 10


def _replay_in_batch(billing, key):
    return key, [req(billing, "new-1"), req(billing, "warm-acme"), req(billing, "new-2")], [
        ("admitted", "new-1", 1), ("replay", "warm-acme", 1), ("admitted", "new-2", 1)]


def _same_id_twice(billing, key):
    return key, [req(billing, "twice"), req(billing, "twice")], [("admitted", "twice", 1), ("replay", "twice", 1)]


def _past_the_limit(billing, key):  # 2 slots left of 4, 3 asked
    assert billing.open_sessions_for_key(key, [req(billing, "second")])[0].session
    return key, [req(billing, f"n-{i}") for i in range(3)], [("admitted", "n-0", 1), ("admitted", "n-1", 1),
                                                              ("refused", Refusal.SESSION_LIMIT_REACHED.code)]


def _key_revoked_since(billing, key):
    made = billing.create_api_key("acme")
    assert billing.open_sessions_for_key(made.key, [req(billing, "by-the-other-key")])[0].session
    billing.revoke_api_key("acme", made.id)
    return made.key, [req(billing, "a"), req(billing, "b")], [("no key",), ("no key",)]


def _limit_changed_since(billing, key):  # a new revision of the subscription: its standing is read again
    billing.set_session_limit("acme", 5)
    return key, [req(billing, f"n-{i}") for i in range(5)], [("admitted", f"n-{i}", 1) for i in range(4)] + [
        ("refused", Refusal.SESSION_LIMIT_REACHED.code)]


def _admitted_elsewhere_meanwhile(billing, key):  # by another process: this one's kept standing holds
    billing.open_session("acme", "elsewhere", agent_id="agent-1", direction="inbound")
    return key, [req(billing, "n-0"), req(billing, "elsewhere")], [("admitted", "n-0", 1), ("replay", "elsewhere", 1)]


@postgres_only
@pytest.mark.parametrize("case", [_replay_in_batch, _same_id_twice, _past_the_limit, _key_revoked_since,
                                  _limit_changed_since, _admitted_elsewhere_meanwhile],
                         ids=lambda f: f.__name__.strip("_"))
def test_what_one_statement_cannot_decide_changes_nothing_and_is_decided_in_order(billing: Billing, case):
    key = paid(billing, "acme", limit=4)
    warm(billing, key, "acme")
    key, requests, expected = case(billing, key)
    before_used, before_stored = used(billing, "acme"), stored(billing, "acme")

    assert gate(billing, key, requests, fallback=False) is None
    assert (used(billing, "acme"), stored(billing, "acme")) == (before_used, before_stored)

    assert [outcome(r) for r in gate(billing, key, requests)] == expected


@postgres_only
def test_one_statement_does_not_decide_uncounted_sessions_nor_a_closed_gate(billing: Billing):
    out_key = paid(billing, "out", plan="outreach")
    warm(billing, out_key, "out")
    assert gate(billing, out_key, [req(billing, "in"), req(billing, "call", "outbound")], fallback=False) is None
    assert [outcome(r) for r in gate(billing, out_key, [req(billing, "in"), req(billing, "call", "outbound")])] == [
        ("admitted", "in", 1), ("admitted", "call", 0)]

    billing.create_tenant("trial", "Trial", "billing@trial.test")
    trial_key = billing.create_api_key("trial").key
    warm(billing, trial_key, "trial")
    billing.advance_clock(seconds=15 * 86400)  # past the 14 days
    assert gate(billing, trial_key, [req(billing, "late")], fallback=False) is None
    assert [outcome(r) for r in gate(billing, trial_key, [req(billing, "late")])] == [
        ("refused", Refusal.SUBSCRIPTION_ENDED.code)]
    assert gate(billing, paid(billing, "cold"), [req(billing, "x")], fallback=False) is None  # a key not seen yet


@postgres_only
@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=requests_strategy, limit=st.integers(min_value=2, max_value=8),
       plan=st.sampled_from(["starter", "outreach"]), before=st.lists(st.sampled_from(_pool), max_size=3))
def test_the_event_loop_path_answers_and_stores_what_the_requests_one_by_one_would(
    billing: Billing, requests, limit, plan, before
):
    same_as_one_by_one(billing, requests, limit, plan, before, warm=True,
                       decide=lambda key, asked: gate(billing, key, asked))


@postgres_only
def test_concurrent_one_statement_batches_never_pass_the_limit(billing: Billing):
    """Batches under four keys of one tenant, all on the event loop at once and on threads beside
    them: the counter's row decides, and the limit is reached exactly."""
    key = paid(billing, "acme", limit=40)
    keys = [key] + [billing.create_api_key("acme").key for _ in range(3)]
    for i, k in enumerate(keys):
        warm(billing, k, "acme", f"warm-{i}")  # 4 used, 36 left

    store, decided = billing.metering, []
    one_statement = store.open_sessions_async

    async def watched(*args):
        answers = await one_statement(*args)
        decided.append(answers is not None)
        return answers

    store.open_sessions_async = watched

    async def go():
        pool = billing.gate_pool()
        await pool.open()
        state = SimpleNamespace(gate_pool=pool)
        try:
            return await asyncio.gather(*(
                runtime.decide_batch(state, billing, keys[i % 4], [req(billing, f"b{i}-{j}") for j in range(1 + i % 3)])
                for i in range(30)))
        finally:
            await pool.close()

    answers = [outcome(r) for batch in asyncio.run(go()) for r in batch]
    assert sum(a[0] == "admitted" for a in answers) == 36
    assert all(a[0] in ("admitted", "refused") for a in answers)
    assert used(billing, "acme") == 40
    assert len(stored(billing, "acme")) == 40
    assert any(decided) and not all(decided), decided  # both ways were taken


# -- the coordinator: what goes together ---------------------------------------------------------

class Recorder:
    """A batch runner that records what it was given and holds each batch until released."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[str]]] = []
        self.release = asyncio.Event()
        self.fail_with: Exception | None = None

    async def run(self, key: str, requests):
        self.batches.append((key, [r.session_id for r in requests]))
        await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [OpenResult(None, refusal=Refusal.SESSION_LIMIT_REACHED) if r.session_id.startswith("no")
                else SessionIdReused(r.session_id) if r.session_id.startswith("dup") else None
                for r in requests]


def _req(session_id: str) -> AdmissionRequest:
    return AdmissionRequest(session_id, "agent", "inbound")  # type: ignore[arg-type]


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_requests_that_arrive_while_a_batch_is_in_flight_go_together_in_the_next():
    async def scenario():
        recorder = Recorder()
        gc = GroupCommit(recorder.run, max_batch=3)
        first = asyncio.ensure_future(gc.admit("k1", _req("a")))
        await _settle()
        assert recorder.batches == [("k1", ["a"])]  # a lone request goes at once
        later = [asyncio.ensure_future(gc.admit("k1", _req(s))) for s in ("b", "no-c", "dup-d", "e")]
        other_key = asyncio.ensure_future(gc.admit("k2", _req("z")))
        await _settle()
        assert recorder.batches == [("k1", ["a"]), ("k2", ["z"])]  # another key is not held up
        recorder.release.set()
        results = await asyncio.gather(first, *later, other_key, return_exceptions=True)
        return recorder.batches, results, gc

    batches, results, gc = asyncio.run(scenario())
    # In arrival order, at most max_batch at a time.
    assert batches == [("k1", ["a"]), ("k2", ["z"]), ("k1", ["b", "no-c", "dup-d"]), ("k1", ["e"])]
    assert results[0] is None and results[1] is None and results[4] is None and results[5] is None
    assert results[2].refusal is Refusal.SESSION_LIMIT_REACHED
    assert isinstance(results[3], SessionIdReused)  # an error in its place is raised to its caller
    assert (gc.batches, gc.admissions) == (4, 6)
    assert gc._queues == {}  # nothing left behind


def test_a_failed_batch_fails_each_of_its_requests_and_the_next_batch_still_runs():
    async def scenario():
        recorder = Recorder()
        gc = GroupCommit(recorder.run)
        recorder.fail_with = RuntimeError("database went away")
        first = asyncio.ensure_future(gc.admit("k", _req("a")))
        await _settle()
        second = asyncio.ensure_future(gc.admit("k", _req("b")))
        await _settle()
        recorder.release.set()
        results = await asyncio.gather(first, second, return_exceptions=True)
        recorder.fail_with = None
        after = await gc.admit("k", _req("c"))
        return results, after

    results, after = asyncio.run(scenario())
    assert [str(r) for r in results] == ["database went away", "database went away"]
    assert after is None


def test_a_request_whose_caller_went_away_before_its_batch_is_not_run():
    async def scenario():
        recorder = Recorder()
        gc = GroupCommit(recorder.run)
        first = asyncio.ensure_future(gc.admit("k", _req("a")))
        await _settle()
        gone = asyncio.ensure_future(gc.admit("k", _req("gone")))
        kept = asyncio.ensure_future(gc.admit("k", _req("kept")))
        await _settle()
        gone.cancel()
        await _settle()
        recorder.release.set()
        await asyncio.gather(first, kept)
        return recorder.batches

    assert asyncio.run(scenario()) == [("k", ["a"]), ("k", ["kept"])]
