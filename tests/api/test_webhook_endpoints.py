"""The operator's webhook endpoints over HTTP: register (secret shown once), list, read, the
delivery log, remove; bad input is a problem that changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agentbilling.settings import Settings
from agentbilling.usecases import test_clock as clocks
from tests.support.http import assert_problem
from tests.support.service import operator_headers
from tests.support.tenants import open_session, setup_tenant


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """These tests deliver to endpoints on this machine: AGENTBILLING_WEBHOOK_ALLOW_PRIVATE=1."""
    return Settings(**{**settings.model_dump(), "webhook_allow_private": True})


def test_register_list_log_and_remove(client):
    op = operator_headers()
    r = client.post("/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/hooks"}, headers=op)
    assert r.status_code == 201, r.text
    ep = r.json()
    assert ep["secret"].startswith("whsec_") and ep["status"] == "enabled"
    listed = client.get("/v1/webhook-endpoints", headers=op).json()["data"]
    assert [e["id"] for e in listed] == [ep["id"]] and "secret" not in listed[0]  # shown once
    acme = setup_tenant(client)
    client.put("/v1/tenants/acme/subscription", json={"plan_id": "starter"}, headers=op)
    assert open_session(client, acme, "s1").status_code == 201
    log = client.get(f"/v1/webhook-endpoints/{ep['id']}/deliveries", headers=op).json()
    assert log["data"][0]["type"] == "subscription.updated" and log["data"][0]["tenant_id"] == "acme"
    assert log["data"][0]["status"] == "pending"  # nothing listens on port 9; no worker pass yet
    assert client.delete(f"/v1/webhook-endpoints/{ep['id']}", headers=op).status_code == 204
    assert_problem(client.get(f"/v1/webhook-endpoints/{ep['id']}", headers=op), 404)
    assert_problem(client.get(f"/v1/webhook-endpoints/{ep['id']}/deliveries", headers=op), 404)


def test_bad_input_and_no_operator_key_change_nothing(client):
    op = operator_headers()
    for body in ({"url": "ftp://x.test/hook"}, {"url": "not a url"}, {}, {"url": "http://x.test", "extra": 1}):
        assert_problem(client.post("/v1/webhook-endpoints", json=body, headers=op), 422)
    assert_problem(client.post("/v1/webhook-endpoints", json={"url": "http://x.test/h"}), 401)
    assert client.get("/v1/webhook-endpoints", headers=op).json()["data"] == []


def test_the_worker_status_says_what_waits(client, billing):
    op = operator_headers()
    empty = client.get("/v1/worker", headers=op).json()
    assert empty["emails"] == {"due": 0, "oldest_due_at": None} and empty["behind_seconds"] == 0
    acme = setup_tenant(client)
    client.post("/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/hooks"}, headers=op)
    client.put("/v1/tenants/acme/subscription", json={"plan_id": "starter"}, headers=op)
    assert open_session(client, acme, "s1").status_code == 201
    waiting = client.get("/v1/worker", headers=op).json()
    assert waiting["webhooks"]["due"] == 1 and waiting["webhooks"]["oldest_due_at"] is not None
    assert waiting["subscriptions_due"] == 0
    assert waiting["behind_seconds"] == 0  # made just now
    clocks.move(billing.db, billing.test_clock, billing.now() + timedelta(seconds=90))  # no worker pass on the way
    assert client.get("/v1/worker", headers=op).json()["behind_seconds"] == 90
    assert_problem(client.get("/v1/worker"), 401)
    report = billing.run_due()  # a pass: the webhook fails (nothing listens) and waits for its retry
    assert report.webhooks_delivered == 0
    assert client.get("/v1/worker", headers=op).json()["webhooks"]["due"] == 0
