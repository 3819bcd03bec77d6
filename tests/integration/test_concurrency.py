"""R4 under real concurrency: admission and counting the first unit are one atomic step.

The HTTP tests run the real app on uvicorn (`live_server`) and fire bursts of 32 requests at
once: 32 worker threads, each request on its own httpx.Client (its own keep-alive connection),
released together by a threading.Barrier. The gate must never let a burst take usage past the
limit, and must never refuse the last free slot to everyone either.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from agentbilling.client import Billing, connect
from agentbilling.domain.gate import Refusal
from tests.support.service import operator_headers
from tests.support.tenants import TenantAccess, open_session, setup_tenant

BURST = 32
ROUNDS = 20
PROBLEM_JSON = "application/problem+json"


# -- firing bursts ------------------------------------------------------------------------

@dataclass
class Shot:
    response: httpx.Response
    sent: float  # monotonic time just before the request went out
    answered: float  # monotonic time the answer was read


class Burst:
    """BURST threads, each request on its own client, all released at once by a barrier."""

    def __init__(self, base_url: str, size: int = BURST) -> None:
        self.size = size
        tls = ssl.create_default_context()  # unused over http; shared so that 32 clients start fast
        self.clients = [httpx.Client(base_url=base_url, timeout=60, verify=tls) for _ in range(size)]
        self.pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="burst")
        # Open every keep-alive connection up front, so the burst measures the gate, not TCP connects.
        self.fire([lambda c: c.get("/livez")] * size)

    def fire(self, calls: list[Callable[[httpx.Client], httpx.Response]]) -> list[Shot]:
        assert len(calls) == self.size
        barrier = threading.Barrier(self.size)

        def run(i: int) -> Shot:
            barrier.wait(timeout=30)
            sent = time.monotonic()
            response = calls[i](self.clients[i])
            return Shot(response, sent, time.monotonic())

        futures = [self.pool.submit(run, i) for i in range(self.size)]
        return [f.result(timeout=120) for f in futures]

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for c in self.clients:
            c.close()


@pytest.fixture
def burst(live_server) -> Iterator[Burst]:
    b = Burst(live_server.url)
    try:
        yield b
    finally:
        b.close()


class GateProbe:
    """Wraps the store's admissions (behaviour unchanged) to see how many requests were being
    decided at once: in concurrent transactions, or together in one (group commit)."""

    def __init__(self, billing: Billing, monkeypatch: pytest.MonkeyPatch) -> None:
        self._lock = threading.Lock()
        self._inside = threading.local()  # a batch of one calls open_session_for_key: counted once
        self._in_flight = 0
        self.max_in_flight = 0
        self.batches: list[int] = []  # the size of every batch the store was given
        store = billing.metering
        self._wrap(monkeypatch, store, "open_session", lambda args: 1)
        self._wrap(monkeypatch, store, "open_session_for_key", lambda args: 1)
        self._wrap(monkeypatch, store, "open_sessions_for_key", lambda args: len(args[1]))
        # PostgreSQL's one statement on the event loop (None: it decided nothing; a thread does).
        self.one_statement: list[int] = []  # the size of every batch it admitted
        on_the_loop = store.open_sessions_async

        async def probed_on_the_loop(pool, key_hash, requests, now):
            self._enter(len(requests), batch=True)
            try:
                answers = await on_the_loop(pool, key_hash, requests, now)
            finally:
                self._leave(len(requests))
            if answers is not None:
                self.one_statement.append(len(requests))
            return answers

        monkeypatch.setattr(store, "open_sessions_async", probed_on_the_loop)

    def _enter(self, n: int, *, batch: bool) -> None:
        with self._lock:
            self._in_flight += n
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            if batch:
                self.batches.append(n)

    def _leave(self, n: int) -> None:
        with self._lock:
            self._in_flight -= n

    def _wrap(self, monkeypatch: pytest.MonkeyPatch, store: object, name: str, size: Callable) -> None:
        original = getattr(store, name)

        def probed(*args, **kwargs):
            if getattr(self._inside, "call", False):
                return original(*args, **kwargs)
            n = size(args)
            self._enter(n, batch=name == "open_sessions_for_key")
            self._inside.call = True
            try:
                return original(*args, **kwargs)
            finally:
                self._inside.call = False
                self._leave(n)

        monkeypatch.setattr(store, name, probed)


@pytest.fixture
def settings(settings):
    # Every request of a burst at the gate at once (the service's default queues them on 4 threads).
    return settings.model_copy(update={"admission_threads": 32})


@pytest.fixture
def probe(billing: Billing, monkeypatch: pytest.MonkeyPatch) -> GateProbe:
    return GateProbe(billing, monkeypatch)


# -- small helpers ------------------------------------------------------------------------

KEYS = 4  # API keys per tenant: a burst's requests take them in turn


def opener(access: TenantAccess, session_id: str, i: int = 0) -> Callable[[httpx.Client], httpx.Response]:
    """The i-th request of a burst, on the tenant's i-th key (of KEYS): requests under one key share
    transactions (group commit), those under different keys race in concurrent transactions."""
    keyed = TenantAccess(access.id, access.more_keys[i % len(access.more_keys)], access.owner_headers)
    return lambda client: open_session(client, keyed, session_id)


def tenant_with_keys(http: httpx.Client, tenant_id: str) -> TenantAccess:
    access = setup_tenant(http, tenant_id)
    for _ in range(KEYS - 1):
        r = http.post(f"/v1/tenants/{tenant_id}/api-keys", headers=operator_headers())
        assert r.status_code == 201, r.text
        access.more_keys.append({"Authorization": f"Bearer {r.json()['key']}"})
    return access


def paid_tenant(http: httpx.Client, tenant_id: str, limit: int | None = None) -> TenantAccess:
    access = tenant_with_keys(http, tenant_id)
    r = http.put(f"/v1/tenants/{tenant_id}/subscription", json={"plan_id": "starter"}, headers=operator_headers())
    assert r.status_code == 200, r.text
    if limit is not None:
        r = http.put("/v1/billing/session-limit", json={"limit": limit}, headers=access.owner_headers)
        assert r.status_code == 200, r.text
        assert r.json()["session_limit"]["limit"] == limit
    return access


def open_many(http: httpx.Client, access: TenantAccess, ids: list[str]) -> None:
    for sid in ids:
        r = open_session(http, access, sid)
        assert r.status_code == 201, r.text


def listed_sessions(http: httpx.Client, access: TenantAccess) -> list[dict]:
    out: list[dict] = []
    cursor = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        r = http.get("/v1/billing/sessions", params=params, headers=access.owner_headers)
        assert r.status_code == 200, r.text
        page = r.json()
        out += page["data"]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def billing_of(http: httpx.Client, access: TenantAccess) -> dict:
    r = http.get("/v1/billing", headers=access.owner_headers)
    assert r.status_code == 200, r.text
    return r.json()


def assert_refused(r: httpx.Response, refusal: Refusal) -> None:
    assert r.status_code == 402, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    body = r.json()
    assert body["type"].endswith("/" + refusal.code), body
    assert body["detail"] == refusal.message


def all_in_flight_at_once(shots: list[Shot]) -> bool:
    """Every request had been sent before the first answer came back."""
    return max(s.sent for s in shots) < min(s.answered for s in shots)


# -- the last slot under a session limit ----------------------------------------------------

def test_a_burst_for_the_last_slot_under_the_limit_admits_exactly_one(http, burst, probe):
    overlapping_rounds = 0
    for rnd in range(ROUNDS):
        limit = 1 + rnd % 5  # 1 (no session yet, no counter row yet) up to 5
        tenant_id = f"limit-{rnd}"
        access = paid_tenant(http, tenant_id, limit)
        open_many(http, access, [f"pre-{i}" for i in range(limit - 1)])
        assert billing_of(http, access)["admission"]["accepting"] is True

        ids = [f"burst-{rnd}-{i}" for i in range(BURST)]
        shots = burst.fire([opener(access, sid, i) for i, sid in enumerate(ids)])
        overlapping_rounds += all_in_flight_at_once(shots)

        admitted = [sid for sid, s in zip(ids, shots, strict=True) if s.response.status_code == 201]
        assert len(admitted) == 1, f"round {rnd} (limit {limit}): admitted {admitted}"
        for sid, s in zip(ids, shots, strict=True):
            if sid not in admitted:
                assert_refused(s.response, Refusal.SESSION_LIMIT_REACHED)

        view = billing_of(http, access)
        assert view["cards"][0]["sessions_count"] == limit
        assert view["session_limit"]["used"] == limit
        assert view["admission"] == {"accepting": False, "reason": "session-limit-reached",
                                     "message": Refusal.SESSION_LIMIT_REACHED.message}
        stored = {s["id"] for s in listed_sessions(http, access)}
        assert len(stored) == limit
        assert stored == {f"pre-{i}" for i in range(limit - 1)} | set(admitted)
        # A refusal is not stored: a refused id is unknown.
        refused_id = next(sid for sid in ids if sid not in admitted)
        assert http.get(f"/v1/sessions/{refused_id}", headers=access.key_headers).status_code == 404
        if rnd % 5 == 4:  # ... so the same id is admitted once the gate opens again
            r = http.put("/v1/billing/session-limit", json={"limit": limit + 1}, headers=access.owner_headers)
            assert r.status_code == 200, r.text
            assert open_session(http, access, refused_id).status_code == 201
            assert billing_of(http, access)["cards"][0]["sessions_count"] == limit + 1

    # The bursts really were concurrent: requests met at the gate, and all 32 were in flight together.
    assert probe.max_in_flight >= 16, probe.max_in_flight
    assert overlapping_rounds >= 1
    assert max(probe.batches) > 1, probe.batches  # some went together in one transaction


def test_a_burst_for_the_last_trial_session_admits_exactly_one(http, burst, billing, probe):
    trial_sessions = billing.settings.trial_sessions
    assert trial_sessions == 50
    for rnd in range(ROUNDS):
        tenant_id = f"trial-{rnd}"
        access = tenant_with_keys(http, tenant_id)
        for i in range(trial_sessions - 1):  # 49 of 50 used; through the Python API to keep it quick
            assert billing.open_session(tenant_id, f"pre-{i}", agent_id="agent-1", direction="inbound").session
        card = billing_of(http, access)["cards"][0]
        assert (card["sessions_count"], card["trial_sessions_left"]) == (49, 1)

        ids = [f"burst-{rnd}-{i}" for i in range(BURST)]
        shots = burst.fire([opener(access, sid, i) for i, sid in enumerate(ids)])

        admitted = [sid for sid, s in zip(ids, shots, strict=True) if s.response.status_code == 201]
        assert len(admitted) == 1, f"round {rnd}: admitted {admitted}"
        for sid, s in zip(ids, shots, strict=True):
            if sid not in admitted:
                assert_refused(s.response, Refusal.SUBSCRIPTION_ENDED)

        view = billing_of(http, access)
        card = view["cards"][0]
        assert card["sessions_count"] == trial_sessions
        assert card["trial_sessions_left"] == 0
        assert card["badge"] == "Expired subscription"
        assert view["admission"]["reason"] == "subscription-ended"
        stored = {s["id"] for s in listed_sessions(http, access)}
        assert len(stored) == trial_sessions
        assert set(admitted) <= stored
    assert probe.max_in_flight >= 16, probe.max_in_flight


@pytest.mark.parametrize("room", ["one slot left", "plenty of room"])
def test_a_burst_of_the_same_session_id_counts_once(http, burst, room):
    for rnd in range(5):
        tenant_id = f"same-{rnd}"
        if room == "one slot left":
            access = paid_tenant(http, tenant_id, limit=3)
            open_many(http, access, ["pre-0", "pre-1"])
        else:
            access = paid_tenant(http, tenant_id)
        before = billing_of(http, access)["cards"][0]["sessions_count"]

        shots = burst.fire([opener(access, "conv-shared", i) for i in range(BURST)])

        codes = sorted(s.response.status_code for s in shots)
        assert codes == [200] * (BURST - 1) + [201], codes
        bodies = [s.response.json() for s in shots]
        assert all(b == bodies[0] for b in bodies), bodies
        assert bodies[0]["id"] == "conv-shared" and bodies[0]["admitted"] is True
        assert bodies[0]["billable_sessions"] == 1

        view = billing_of(http, access)
        assert view["cards"][0]["sessions_count"] == before + 1
        listed = [s["id"] for s in listed_sessions(http, access)]
        assert listed.count("conv-shared") == 1
        assert len(listed) == before + 1


def test_bursts_of_new_ids_under_known_keys_are_admitted_whole_and_counted_once(http, burst, billing, probe):
    """The gate's common case: keys already used, a limit far off. On PostgreSQL such batches are
    admitted in one statement on the event loop; whichever way, every request is admitted once."""
    access = paid_tenant(http, "busy", limit=1000)
    for i in range(KEYS):  # each key once: the service now knows its tenant
        assert opener(access, f"warm-{i}", i)(http).status_code == 201
    for rnd in range(5):
        ids = [f"burst-{rnd}-{i}" for i in range(BURST)]
        shots = burst.fire([opener(access, sid, i) for i, sid in enumerate(ids)])
        assert [s.response.status_code for s in shots] == [201] * BURST
        assert [s.response.json()["id"] for s in shots] == ids

    assert billing_of(http, access)["cards"][0]["sessions_count"] == KEYS + 5 * BURST
    assert len(listed_sessions(http, access)) == KEYS + 5 * BURST
    if billing.db.is_sqlite:
        assert probe.one_statement == []  # no asyncio driver: every batch is a transaction on a thread
    else:
        assert sum(probe.one_statement) > BURST, probe.one_statement


def test_replays_and_new_ids_racing_for_the_last_slot(http, burst):
    """Half the burst repeats one id, half are new ids; one slot is left. One session wins it."""
    for rnd in range(ROUNDS // 2):
        access = paid_tenant(http, f"mixed-{rnd}", limit=2)
        open_many(http, access, ["pre-0"])
        ids = ["shared" if i % 2 else f"new-{i}" for i in range(BURST)]
        shots = burst.fire([opener(access, sid, i) for i, sid in enumerate(ids)])

        winners = {sid for sid, s in zip(ids, shots, strict=True) if s.response.status_code in (200, 201)}
        assert len(winners) == 1, winners
        (winner,) = winners
        for sid, s in zip(ids, shots, strict=True):
            if sid != winner:
                assert_refused(s.response, Refusal.SESSION_LIMIT_REACHED)
        # Every request for the winning id was answered with the admission: one 201, replays 200.
        winner_shots = [s.response for sid, s in zip(ids, shots, strict=True) if sid == winner]
        codes = sorted(r.status_code for r in winner_shots)
        assert codes == [200] * (len(codes) - 1) + [201], codes
        assert all(r.json() == winner_shots[0].json() for r in winner_shots)

        view = billing_of(http, access)
        assert view["cards"][0]["sessions_count"] == 2
        assert {s["id"] for s in listed_sessions(http, access)} == {"pre-0", winner}


# -- in process, the Python API from many threads ------------------------------------------------

def race(services: list[Billing], tenant_id: str, attempts: int) -> tuple[list[str], list[Refusal]]:
    """`attempts` threads, all released at once, each opening its own session id."""
    barrier = threading.Barrier(attempts)
    admitted: list[str] = []
    refused: list[Refusal] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        service = services[i % len(services)]
        try:
            barrier.wait(timeout=30)
            result = service.open_session(tenant_id, f"conv-{i}", agent_id="agent-1", direction="inbound")
        except BaseException as exc:  # noqa: BLE001 - reported below
            with lock:
                errors.append(exc)
            return
        with lock:
            if result.session is not None:
                assert result.refusal is None and not result.replay
                admitted.append(result.session.id)
            else:
                refused.append(result.refusal)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(attempts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    return admitted, refused


def stored_ids(service: Billing, tenant_id: str) -> list[str]:
    out, cursor = [], None
    while True:
        page = service.list_sessions(tenant_id, cursor=cursor, limit=100)
        out += [s.id for s in page.data]
        cursor = page.next_cursor
        if cursor is None:
            return out


def test_in_process_200_attempts_under_a_limit_of_100_admit_exactly_100(billing: Billing):
    for rnd in range(3):
        tenant_id = f"inproc-{rnd}"
        billing.create_tenant(tenant_id, "In Process", "billing@inproc.test")
        billing.put_subscription(tenant_id, "starter")
        assert billing.set_session_limit(tenant_id, 100).limit == 100

        admitted, refused = race([billing], tenant_id, 200)

        assert len(admitted) == 100
        assert refused == [Refusal.SESSION_LIMIT_REACHED] * 100
        view = billing.billing_view(tenant_id)
        assert view.cards[0].sessions_count == 100
        assert view.session_limit is not None and view.session_limit.used == 100
        assert not billing.admission(tenant_id).accepting
        stored = stored_ids(billing, tenant_id)
        assert len(stored) == 100 and set(stored) == set(admitted)


def test_two_services_on_one_database_share_the_limit(billing: Billing, settings, clock):
    """Two API processes' worth of service (own pools, own in-process locks) on the same database."""
    other = connect(settings, clock=clock, upgrade=False)
    try:
        billing.create_tenant("shared", "Shared", "billing@shared.test")
        billing.put_subscription("shared", "starter")
        billing.set_session_limit("shared", 100)

        admitted, refused = race([billing, other], "shared", 200)

        assert len(admitted) == 100
        assert refused == [Refusal.SESSION_LIMIT_REACHED] * 100
        for service in (billing, other):
            assert service.billing_view("shared").cards[0].sessions_count == 100
        assert set(stored_ids(other, "shared")) == set(admitted)
    finally:
        other.close()
