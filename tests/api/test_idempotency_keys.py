"""Issue 13, finding 5 (and issue 14's part assigned to it): Idempotency-Keys expire, the worker
deletes them in bounded batches, a replay sent after the first answer arrived is that answer
(never 409), and answers that carry a secret are stored without it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from agentbilling.api import idempotency
from agentbilling.client import Billing
from agentbilling.storage.repositories.idempotency import IdempotencyStore
from agentbilling.storage.tables import idempotency_keys
from agentbilling.worker import Worker
from tests.support.service import operator_headers
from tests.support.tenants import open_session, setup_tenant


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


def stored_bodies(billing: Billing) -> list[str]:
    with billing.db.read() as conn:
        return list(conn.execute(select(idempotency_keys.c.body)).scalars())


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"idempotency_ttl_seconds": 2})


def test_idempotency_key_reused_after_expiry_is_new(client) -> None:
    access = setup_tenant(client)
    body = {"id": "s-1", "agent_id": "a", "direction": "inbound"}
    first = client.post("/v1/sessions", json=body, headers=keyed(access.key_headers, "k-1"))
    assert first.status_code == 201
    other = {**body, "id": "s-2"}
    reused = client.post("/v1/sessions", json=other, headers=keyed(access.key_headers, "k-1"))
    assert reused.status_code == 422  # within its time to live, the key belongs to the first request
    time.sleep(2.2)
    again = client.post("/v1/sessions", json=other, headers=keyed(access.key_headers, "k-1"))
    assert again.status_code == 201, again.text  # expired: a new request under the same key
    assert again.json()["id"] == "s-2" and "idempotent-replayed" not in again.headers
    replay = client.post("/v1/sessions", json=other, headers=keyed(access.key_headers, "k-1"))
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"


def test_idempotency_keys_expire_in_bounded_batches(billing: Billing) -> None:
    store = IdempotencyStore(billing.db, timedelta(seconds=2))
    now = datetime.now(UTC)
    for i in range(7):
        assert store.claim("p", f"old-{i}", "h", now - timedelta(seconds=10)).state == "new"
    assert store.claim("p", "fresh", "h", now).state == "new"
    assert store.expire(now, batch=3, batches=2) == 6  # two batches of three, the rest next time
    assert store.expire(now, batch=3, batches=2) == 1
    with billing.db.read() as conn:
        left = list(conn.execute(select(idempotency_keys.c.key)).scalars())
    assert left == ["fresh"]


def test_the_worker_deletes_expired_idempotency_keys(billing: Billing) -> None:
    store = IdempotencyStore(billing.db, timedelta(seconds=2))
    for i in range(3):
        store.claim("p", f"old-{i}", "h", datetime.now(UTC) - timedelta(seconds=10))
    Worker(billing, interval=60).run_once()
    with billing.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(idempotency_keys)).scalar_one() == 0


def test_a_replay_sent_after_the_answer_arrived_is_that_answer(http, monkeypatch) -> None:
    """The record is complete before the answer leaves: even when storing it is slow, a replay
    sent the moment the answer arrives is the replay, never 409 idempotency-key-in-use. (A real
    server: the answer goes out on the socket as soon as it is sent.)"""
    client = http
    access = setup_tenant(client)
    save = IdempotencyStore.save

    def slow_save(self, *args, **kwargs):
        time.sleep(0.3)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(IdempotencyStore, "save", slow_save)
    body = {"id": "s-1", "agent_id": "a", "direction": "inbound"}
    first = client.post("/v1/sessions", json=body, headers=keyed(access.key_headers, "k-1"))
    assert first.status_code == 201
    replay = client.post("/v1/sessions", json=body, headers=keyed(access.key_headers, "k-1"))
    assert replay.status_code == 201, replay.text
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()


def test_idempotent_answers_carrying_a_secret_are_stored_without_it(client, billing: Billing) -> None:
    setup_tenant(client)
    op = operator_headers()
    first = client.post("/v1/tenants/acme/api-keys", headers=keyed(op, "key-1"))
    assert first.status_code == 201
    key = first.json()["key"]
    token = client.post("/v1/tenants/acme/users/u-owner/tokens", headers=keyed(op, "tok-1"))
    assert token.status_code == 201
    secrets = [key, token.json()["token"], token.json()["login_url"]]
    assert not any(s in body for s in secrets for body in stored_bodies(billing))

    replay = client.post("/v1/tenants/acme/api-keys", headers=keyed(op, "key-1"))
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.headers["idempotent-secret-removed"] == "key"
    assert replay.headers["cache-control"] == "no-store"
    assert replay.json() == {**first.json(), "key": None}  # the key's id: the caller may revoke it
    replay = client.post("/v1/tenants/acme/users/u-owner/tokens", headers=keyed(op, "tok-1"))
    assert replay.headers["idempotent-secret-removed"] == "token,login_url"
    assert replay.json() == {**token.json(), "token": None, "login_url": None}
    # The key itself works: it was issued once, by the first request.
    assert open_session(client, type("A", (), {"key_headers": {"Authorization": f"Bearer {key}"}})(),
                        "s-1").status_code == 201


def test_secret_fields_are_named_for_every_answer_that_carries_one() -> None:
    assert idempotency.without_secrets("/v1/webhook-endpoints", b'{"id":"we_1","secret":"whsec_x"}') == (
        b'{"id":"we_1","secret":null}', ("secret",))
    assert idempotency.without_secrets("/v1/sessions", b'{"id":"s"}') == (b'{"id":"s"}', ())
