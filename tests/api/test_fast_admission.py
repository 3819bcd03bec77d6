"""POST /v1/sessions answers the same through the ASGI fast path and through the full FastAPI stack.

A request with an Idempotency-Key takes the full stack; one without takes the fast path.
"""

import uuid

import pytest

from tests.support.tenants import setup_tenant


def _both(client, headers, body):
    fast = client.post("/v1/sessions", headers=headers, content=body)
    full = client.post("/v1/sessions", headers={**headers, "Idempotency-Key": str(uuid.uuid4())}, content=body)
    return fast, full


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "", "agent_id": "a", "direction": "inbound"}',
        b'{"id": "x", "agent_id": "a", "direction": "sideways"}',
        b'{"id": "x", "agent_id": "a"}',
        b"not json",
        b"",
        b'{"id": "x", "agent_id": "a", "direction": "inbound", "extra": 1}',
    ],
)
def test_bad_bodies_get_the_same_422(client, body):
    acme = setup_tenant(client)
    fast, full = _both(client, {**acme.key_headers, "Content-Type": "application/json"}, body)
    assert fast.status_code == full.status_code == 422
    assert fast.headers["content-type"] == full.headers["content-type"] == "application/problem+json"
    assert fast.json() == full.json()


@pytest.mark.parametrize("authorization", [None, "Bearer nope", "Basic abc"])
def test_missing_or_wrong_keys_get_the_same_401(client, authorization):
    setup_tenant(client)
    headers = {"Content-Type": "application/json"} | ({"Authorization": authorization} if authorization else {})
    fast, full = _both(client, headers, b'{"id": "s", "agent_id": "a", "direction": "inbound"}')
    assert fast.status_code == full.status_code == 401
    assert fast.json() == full.json()
    assert fast.headers["www-authenticate"] == full.headers["www-authenticate"] == "Bearer"


def test_admissions_replays_and_refusals_read_the_same(client, billing):
    acme = setup_tenant(client)
    headers = {**acme.key_headers, "Content-Type": "application/json"}
    first = client.post("/v1/sessions", headers=headers, content=b'{"id":"s1","agent_id":"a","direction":"inbound"}')
    replay_fast, replay_full = _both(client, headers, b'{"id":"s1","agent_id":"a","direction":"inbound"}')
    assert first.status_code == 201 and replay_fast.status_code == replay_full.status_code == 200
    assert first.json() == replay_fast.json() == replay_full.json()

    reused_fast, reused_full = _both(client, headers, b'{"id":"s1","agent_id":"b","direction":"inbound"}')
    assert reused_fast.status_code == reused_full.status_code == 409
    assert reused_fast.json() == reused_full.json()

    billing.advance_clock(seconds=15 * 86400)  # the trial has ended
    refused_fast, refused_full = _both(client, headers, b'{"id":"s2","agent_id":"a","direction":"inbound"}')
    assert refused_fast.status_code == refused_full.status_code == 402
    assert refused_fast.json() == refused_full.json()
    assert refused_fast.json()["detail"] == "Your subscription has ended. Please upgrade your plan to continue."
