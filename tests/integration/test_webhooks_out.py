"""Webhooks out to real HTTP endpoints started by the test: signed per Standard Webhooks
(verified with the `standardwebhooks` package), retried on the schedule, a 410 disables, a bad
endpoint never holds up the others, two workers deliver each once."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from agentbilling.client import Billing, connect
from agentbilling.clock import TestClock
from agentbilling.delivery.webhooks_out import DISABLE_AFTER, RETRY_AFTER, emit
from agentbilling.settings import Settings
from tests.fakes.webhook_endpoint import Receiver, receiver  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """These tests deliver to endpoints on this machine: AGENTBILLING_WEBHOOK_ALLOW_PRIVATE=1."""
    return Settings(**{**settings.model_dump(), "webhook_allow_private": True})


class Later:
    """The wall clock moved on by `by` (delivery runs on the wall clock, not the test clock)."""

    def __init__(self, clock, by: timedelta) -> None:
        self.clock, self.by = clock, by

    def now(self):
        return self.clock.now() + self.by


def later(b: Billing, by: timedelta) -> None:
    b.wall_clock = Later(b.wall_clock, by)


def _fill(b: Billing, prefix: str, n: int) -> None:
    for i in range(n):
        assert b.open_session("acme", f"{prefix}{i}", agent_id="a", direction="inbound").refusal is None


def test_notices_and_subscription_changes_arrive_signed_and_verifiable(billing: Billing, receiver: Receiver):
    ep = billing.create_webhook_endpoint(f"{receiver.url}/hooks")
    assert ep.secret and ep.secret.startswith("whsec_")
    billing.create_tenant("acme", "Acme", "billing@acme.test")
    _fill(billing, "a", 30)
    billing.run_due()
    billing.put_subscription("acme", "starter")
    billing.run_due()
    assert receiver.types("/hooks") == ["notice.trial_sessions_60", "subscription.updated"]
    verifier = Webhook(ep.secret)
    for headers, body in receiver.at("/hooks"):
        payload = verifier.verify(body, headers)  # raises on a bad signature
        assert headers["webhook-id"].startswith("evt_") and payload["data"]["tenant_id"] == "acme"
    sub = json.loads(receiver.at("/hooks")[1][1])["data"]["subscription"]
    assert sub["status"] == "active" and sub["plan_id"] == "starter"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(receiver.at("/hooks")[0][1], receiver.at("/hooks")[0][0])
    log, _ = billing.webhook_deliveries(ep.id)
    assert [(d.type, d.status, d.attempts, d.last_status_code) for d in log] == [
        ("subscription.updated", "delivered", 1, 200), ("notice.trial_sessions_60", "delivered", 1, 200)]


def test_retries_follow_the_schedule_then_the_delivery_fails(billing: Billing, receiver: Receiver):
    receiver.answers["/down"] = 503
    ep = billing.create_webhook_endpoint(f"{receiver.url}/down")
    billing.create_tenant("acme", "Acme", "billing@acme.test")
    with billing.db.write() as conn:
        emit(conn, "acme", "test.event", {}, billing.now())
    waited = timedelta(0)
    for k, wait in enumerate(RETRY_AFTER, start=1):
        billing.run_due()
        (d,), _ = billing.webhook_deliveries(ep.id)
        assert d.status == "pending" and d.attempts == k and d.last_status_code == 503
        assert d.next_at - billing.wall_clock.now() == pytest.approx(wait, abs=timedelta(seconds=2))
        billing.run_due()  # not due yet: no try
        assert len(receiver.at("/down")) == k
        later(billing, wait)
        waited += wait
    billing.run_due()
    (d,), _ = billing.webhook_deliveries(ep.id)
    assert d.status == "failed" and d.attempts == len(RETRY_AFTER) + 1
    assert len(receiver.at("/down")) == len(RETRY_AFTER) + 1
    assert waited < DISABLE_AFTER and billing.webhook_endpoint(ep.id).disabled_at is None


def test_a_410_disables_the_endpoint_and_later_events_skip_it(billing: Billing, receiver: Receiver):
    receiver.answers["/gone"] = 410
    gone = billing.create_webhook_endpoint(f"{receiver.url}/gone")
    billing.create_tenant("acme", "Acme", "billing@acme.test")
    _fill(billing, "a", 30)
    billing.run_due()
    assert billing.webhook_endpoint(gone.id).disabled_reason == "410 Gone"
    billing.put_subscription("acme", "starter")
    later(billing, timedelta(days=1))
    billing.run_due()
    assert len(receiver.at("/gone")) == 1
    log, _ = billing.webhook_deliveries(gone.id)
    assert [(d.status, d.last_status_code) for d in log] == [("failed", 410)]


def test_an_endpoint_failing_for_five_days_is_disabled(billing: Billing, receiver: Receiver):
    receiver.answers["/flaky"] = 500
    ep = billing.create_webhook_endpoint(f"{receiver.url}/flaky")
    billing.create_tenant("acme", "Acme", "billing@acme.test")
    for i in range(3):
        with billing.db.write() as conn:
            emit(conn, "acme", "test.event", {"i": i}, billing.now())
    billing.run_due()
    for _ in range(12):
        later(billing, timedelta(hours=10))
        billing.run_due()
    endpoint = billing.webhook_endpoint(ep.id)
    assert endpoint.disabled_at is not None and endpoint.disabled_reason.startswith("failing since")
    assert {d.status for d in billing.webhook_deliveries(ep.id)[0]} == {"failed"}


def test_a_bad_endpoint_never_holds_up_the_others(billing: Billing, receiver: Receiver):
    receiver.answers["/bad"] = 500
    bad = billing.create_webhook_endpoint(f"{receiver.url}/bad")
    billing.create_webhook_endpoint("http://127.0.0.1:9/refused")  # nothing listens there
    billing.create_webhook_endpoint(f"{receiver.url}/good")
    billing.create_tenant("acme", "Acme", "billing@acme.test")
    with billing.db.write() as conn:
        for i in range(30):
            emit(conn, "acme", "test.event", {"i": i}, billing.now())
    billing.run_due()  # one pass
    assert [json.loads(b)["data"]["i"] for _, b in receiver.at("/good")] == list(range(30))
    assert len(receiver.at("/bad")) == 1  # tried once this pass, not thirty times
    log, _ = billing.webhook_deliveries(bad.id, limit=50)
    assert sum(d.attempts for d in log) == 1 and {d.status for d in log} == {"pending"}


def test_two_workers_deliver_each_event_once(settings: Settings, clock: TestClock, receiver: Receiver):
    setup = connect(settings, clock=clock, upgrade=False)
    setup.create_webhook_endpoint(f"{receiver.url}/race")
    setup.create_tenant("acme", "Acme", "billing@acme.test")
    with setup.db.write() as conn:
        for i in range(200):
            emit(conn, "acme", "test.event", {"i": i}, setup.now())
    workers = [connect(settings, clock=clock, upgrade=False) for _ in range(2)]
    counts = [0, 0]
    start = threading.Barrier(2)

    def run(i: int) -> None:
        start.wait()
        counts[i] = workers[i].webhooks.deliver(workers[i].wall_clock.now, batch=10)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        ids = [h["webhook-id"] for h, _ in receiver.at("/race")]
        assert len(ids) == 200 and len(set(ids)) == 200
        assert sum(counts) == 200 and all(counts), counts
    finally:
        for w in (setup, *workers):
            w.close()
