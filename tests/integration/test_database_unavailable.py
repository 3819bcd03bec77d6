"""Issue 13, findings 3 and 4: a database that cannot be reached is a 503 problem+json
`database-unavailable` with Retry-After, within the timeouts, never a 500 or a hang; /readyz
answers within 5 s and says why; the service recovers by itself when the database returns.

The service reaches PostgreSQL through a TCP proxy (tests/fakes/db_proxy.py) that cuts or hangs its
connections. PostgreSQL only: SQLite has no network to lose.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import make_url

from agentbilling.api.app import create_app
from agentbilling.client import Billing, connect
from agentbilling.clock import TestClock
from agentbilling.settings import Settings
from tests.fakes.db_proxy import DbProxy
from tests.support.service import LiveServer
from tests.support.tenants import TenantAccess, open_session, setup_tenant

ON_POSTGRES = os.environ.get("AGENTBILLING_TEST_DATABASE_URL", "").startswith("postgres")
pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL only: the database is reached over TCP")

STATEMENT_S = 2.0
PROBLEM_JSON = "application/problem+json"


@pytest.fixture
def proxy(database_url: str) -> Iterator[DbProxy]:
    url = make_url(database_url)
    p = DbProxy((url.host or "127.0.0.1", url.port or 5432))
    yield p
    p.close()


@pytest.fixture
def service(settings: Settings, clock: TestClock, proxy: DbProxy, database_url: str) -> Iterator[Billing]:
    through = make_url(database_url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    s = settings.model_copy(update={"database_url": through, "db_connect_timeout": 1.0,
                                    "db_statement_timeout": STATEMENT_S, "db_pool_timeout": 1.0,
                                    "db_keepalive_idle": 1})
    svc = connect(s, clock=clock, upgrade=False)
    yield svc
    svc.close()


@pytest.fixture
def http(service: Billing) -> Iterator[httpx.Client]:
    with LiveServer(create_app(service)) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    assert r.json()["type"].endswith("/database-unavailable")
    assert int(r.headers["retry-after"]) > 0


def timed(call) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    r = call()
    return r, time.monotonic() - start


def recovers(http: httpx.Client, access: TenantAccess, prefix: str) -> None:
    """The service answers again by itself once the database is back: within 10 s, the first
    requests at most meeting connections that died (each dropped by its pool)."""
    deadline = time.monotonic() + 10
    for i in range(50):
        r = open_session(http, access, f"{prefix}-{i}")
        if r.status_code == 201:
            break
        unavailable(r)
        assert time.monotonic() < deadline, "the service did not recover"
        time.sleep(0.2)
    assert http.get("/readyz").status_code == 200
    assert http.get("/v1/billing", headers=access.owner_headers).status_code == 200


def test_database_cut_is_503_problem_json_then_recovers(http: httpx.Client, proxy: DbProxy) -> None:
    access = setup_tenant(http)
    for i in range(3):  # the gate's pools hold connections now, on every path
        assert open_session(http, access, f"before-{i}").status_code == 201
    proxy.cut()
    for call in (lambda: open_session(http, access, "during-1"),
                 lambda: open_session(http, access, "during-2"),
                 lambda: http.get("/v1/billing", headers=access.owner_headers),
                 lambda: http.post("/v1/sessions", json={"id": "k-1", "agent_id": "a", "direction": "inbound"},
                                   headers={**access.key_headers, "Idempotency-Key": "k-1"})):
        r, took = timed(call)
        unavailable(r)
        assert took < 5, took
    r, took = timed(lambda: http.get("/readyz"))
    assert r.status_code == 503 and took < 5, (r.text, took)
    assert "does not answer" in r.json()["detail"]
    assert http.get("/livez").status_code == 200
    proxy.heal()
    recovers(http, access, "after")


def test_database_hang_is_503_within_the_timeouts_then_recovers(http: httpx.Client, proxy: DbProxy) -> None:
    access = setup_tenant(http)
    for i in range(3):
        assert open_session(http, access, f"before-{i}").status_code == 201
    proxy.hang()
    r, took = timed(lambda: http.get("/readyz"))
    assert r.status_code == 503 and took < 5, (r.text, took)
    assert "did not answer within" in r.json()["detail"]
    for call in (lambda: open_session(http, access, "during-1"),
                 lambda: http.get("/v1/billing", headers=access.owner_headers)):
        r, took = timed(call)
        unavailable(r)
        assert took < STATEMENT_S + 2 + 1.5, (call, took)  # the statement timeout, the watchdog's margin, its tick
    proxy.heal()
    recovers(http, access, "after")
