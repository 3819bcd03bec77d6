"""Issue 14, finding 7: webhook endpoints refuse loopback, private, link-local and metadata
destinations, in every spelling, at creation and again at delivery after resolving the name;
AGENTBILLING_WEBHOOK_ALLOW_PRIVATE=1 allows them."""

from __future__ import annotations

import ipaddress
import json

import pytest

from agentbilling.delivery import destinations
from agentbilling.delivery.webhooks_out import emit
from agentbilling.settings import Settings
from tests.fakes.webhook_endpoint import Receiver, receiver  # noqa: F401 (a fixture)
from tests.support.http import assert_problem
from tests.support.service import operator_headers

OP = operator_headers()

REFUSED_URLS = [
    "http://127.0.0.1/hook", "http://127.0.0.1:9/hook", "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook", "http://2130706433/hook", "http://0x7f000001/hook", "http://0177.0.0.1/hook",
    "http://127.1/hook", "http://[::ffff:127.0.0.1]/hook", "http://[::ffff:a9fe:a9fe]/hook", "http://10.1.2.3/",
    "http://192.168.0.1/", "http://172.16.0.1/", "http://100.64.0.1/", "http://0.0.0.0/", "http://[fe80::1]/",
    "http://[fd00::1]/", "http://localhost:8000/hook", "http://api.localhost/", "http://metadata.google.internal/",
    "http://224.0.0.1/", "https://user:pass@127.0.0.1/hook",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_finding_7_private_destinations_are_refused_at_creation(client, url):
    assert_problem(client.post("/v1/webhook-endpoints", json={"url": url}, headers=OP), 422)
    assert client.get("/v1/webhook-endpoints", headers=OP).json()["data"] == []


def test_finding_7_a_name_that_resolves_to_a_private_address_is_refused_at_creation(client, monkeypatch):
    monkeypatch.setattr(destinations, "resolve", lambda host, port: [ipaddress.ip_address("10.0.0.7")])
    assert_problem(client.post("/v1/webhook-endpoints", json={"url": "https://hooks.example/x"}, headers=OP), 422)


def test_finding_7_public_destinations_are_accepted(client):
    for url in ["https://93.184.215.14/hook", "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/hook",
                "https://hooks.example.invalid/billing"]:
        assert client.post("/v1/webhook-endpoints", json={"url": url}, headers=OP).status_code == 201, url


def _one_event(billing) -> None:
    billing.create_tenant("acme", "Acme", "billing@acme.test")
    with billing.db.write() as conn:
        emit(conn, "acme", "test.event", {"i": 1}, billing.now())
    billing.run_due()


def test_finding_7_a_name_rebound_to_loopback_after_creation_is_refused_at_delivery(
        billing, receiver, monkeypatch):  # noqa: F811
    port = receiver.url.rsplit(":", 1)[1]
    answers = iter([[ipaddress.ip_address("93.184.215.14")]])  # public when made ...
    monkeypatch.setattr(destinations, "resolve",
                        lambda host, p: next(answers, [ipaddress.ip_address("127.0.0.1")]))  # ... loopback later
    ep = billing.create_webhook_endpoint(f"http://rebind.example:{port}/hook")
    _one_event(billing)
    assert receiver.at("/hook") == []
    (delivery,), _ = billing.webhook_deliveries(ep.id)
    assert delivery.status == "pending" and delivery.last_status_code is None
    assert delivery.last_error == destinations.REFUSED


def test_finding_7_delivery_connects_to_the_address_it_checked(billing, receiver, monkeypatch):  # noqa: F811
    """The checked address is the one connected to (no second lookup); the Host header keeps the name."""
    port = receiver.url.rsplit(":", 1)[1]
    lookups: list[str] = []

    def resolve(host, p):
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(destinations, "resolve", resolve)
    monkeypatch.setattr(destinations, "public", lambda ip: True)  # stand-in for a public address
    ep = billing.create_webhook_endpoint(f"http://hooks.example:{port}/hook")
    lookups.clear()
    _one_event(billing)
    ((headers, body),) = receiver.at("/hook")
    assert headers["host"] == f"hooks.example:{port}" and json.loads(body)["type"] == "test.event"
    assert lookups == ["hooks.example"]
    assert billing.webhook_deliveries(ep.id)[0][0].status == "delivered"


def test_finding_7_allow_private_lets_local_endpoints_through(settings, clock, receiver):  # noqa: F811
    from agentbilling.client import connect
    allowed = connect(Settings(**{**settings.model_dump(), "webhook_allow_private": True}), clock=clock,
                      upgrade=False)
    try:
        ep = allowed.create_webhook_endpoint(f"{receiver.url}/hook")
        _one_event(allowed)
        assert len(receiver.at("/hook")) == 1
        assert allowed.webhook_deliveries(ep.id)[0][0].status == "delivered"
    finally:
        allowed.close()
