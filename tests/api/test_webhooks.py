"""Provider webhooks into `POST /v1/webhooks/{provider}`: the signature checked on the raw body,
each event stored once and applied once, and any delivery order ending in the same state."""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import func, select

from agentbilling.client import Billing
from agentbilling.domain.periods import add_months
from agentbilling.storage.tables import provider_events
from tests.support.http import assert_problem, card
from tests.support.subscribing import (  # noqa: F401 (settings and acme are fixtures)
    CARD_CHARGES_FAIL,
    CARD_OK,
    acme,
    add_card,
    badges,
    change_plan,
    checkout,
    complete,
    invoices,
    portal_action,
    settings,
    subscribe,
    undelivered,
)
from tests.support.tenants import advance, setup_tenant


class Held:
    """The sandbox's deliveries held back, to be delivered by the test as it likes."""

    def __init__(self, billing: Billing) -> None:
        self.billing = billing
        assert billing.sandbox is not None
        self.sandbox = billing.sandbox
        self.deliver = self.sandbox.deliver

    def __enter__(self) -> Held:
        self.sandbox.deliver = None
        return self

    def __exit__(self, *exc: object) -> None:
        self.sandbox.deliver = self.deliver

    def events(self) -> list[tuple[str, str]]:
        return [(r.id, r.body) for r in undelivered(self.billing)]


def post(client, billing: Billing, event_id: str, body: str, *, at: datetime | None = None,
         headers: dict[str, str] | None = None):
    assert billing.sandbox is not None
    signed = headers if headers is not None else billing.sandbox.sign(event_id, body, at)
    return client.post("/v1/webhooks/sandbox", content=body.encode(), headers=signed)


def stored_events(billing: Billing) -> int:
    with billing.db.read() as conn:
        return conn.execute(select(func.count()).select_from(provider_events)).scalar_one()


def held_checkout(client, billing, access, plan="mini") -> list[tuple[str, str]]:
    co = checkout(client, access, plan).json()
    with Held(billing) as held:
        assert complete(client, co["id"]).status_code == 200
        return held.events()


def test_a_signed_delivery_is_applied_once_and_a_duplicate_changes_nothing(client, billing):
    acme = setup_tenant(client, "acme")
    (event,) = held_checkout(client, billing, acme)
    assert card(client, acme)["badge"] == "Trial subscription"  # nothing learnt yet
    r = post(client, billing, *event)
    assert (r.status_code, r.json()) == (200, {"status": "applied"})
    assert card(client, acme)["badge"] == "Active subscription"
    before = (client.get("/v1/billing", headers=acme.owner_headers).json(), invoices(client, acme))
    for _ in range(3):
        r = post(client, billing, *event)
        assert (r.status_code, r.json()) == (200, {"status": "duplicate"})
    assert (client.get("/v1/billing", headers=acme.owner_headers).json(), invoices(client, acme)) == before
    assert stored_events(billing) == 1


@pytest.mark.parametrize("tamper", ["body", "signature", "secret", "stale", "future", "no-headers", "garbage"])
def test_a_delivery_that_is_not_the_providers_is_refused_and_changes_nothing(client, billing, tamper):
    acme = setup_tenant(client, "acme")
    (event_id, body) = held_checkout(client, billing, acme)[0]
    headers = billing.sandbox.sign(event_id, body)
    now = datetime.now(UTC)
    if tamper == "body":
        body = body.replace("acme", "acmf")
    elif tamper == "signature":
        headers["webhook-signature"] = "v1," + "A" * 44
    elif tamper == "secret":
        from standardwebhooks.webhooks import Webhook

        headers["webhook-signature"] = Webhook("whsec_" + "B" * 44).sign(event_id, now, body)
    elif tamper == "stale":
        headers = billing.sandbox.sign(event_id, body, now - timedelta(minutes=6))
    elif tamper == "future":
        headers = billing.sandbox.sign(event_id, body, now + timedelta(minutes=6))
    elif tamper == "no-headers":
        headers = {"content-type": "application/json"}
    else:
        headers["webhook-signature"] = "not a signature"
    r = post(client, billing, event_id, body, headers=headers)
    assert_problem(r, 400, "invalid-signature")
    assert card(client, acme)["badge"] == "Trial subscription"
    assert stored_events(billing) == 0


def test_an_unknown_provider_is_404(client, billing):
    assert_problem(client.post("/v1/webhooks/paypal", content=b"{}"), 404)


def test_a_reordered_delivery_ends_in_the_providers_latest_state(client, billing):
    acme = setup_tenant(client, "acme")
    co = checkout(client, acme, "mini").json()
    with Held(billing) as held:
        complete(client, co["id"])
        for action in ("cancel", "resume", "cancel"):
            assert portal_action(client, "acme", action).status_code == 200
        events = held.events()
    assert [json.loads(b)["type"] for _, b in events] == ["checkout.completed"] + ["subscription.updated"] * 3
    for event in reversed(events):
        assert post(client, billing, *event).status_code == 200
    c = card(client, acme)
    assert c["badge"] == "Canceled subscription" and c["expires_on"] == "2026-02-28T09:00:00Z"


# -- any order, any number of times --------------------------------------------------------------

_tenants = itertools.count()
ACTIONS = st.lists(st.sampled_from(["cancel", "resume", "good card", "failing card"]), max_size=6)


@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=ACTIONS, copies=st.lists(st.integers(1, 5), min_size=40, max_size=40), seed=st.integers(0, 2**32))
def test_delivering_each_event_one_to_five_times_in_any_order_gives_the_same_final_state(
    client, billing, actions, copies, seed
):
    """The events of a subscription's life (its start, a failed renewal charge and its retries, cards,
    cancel and resume) delivered each 1-5 times in a random order end where the provider's books end.
    (An upgrade is no longer left unpaid to reorder: it is paid before it runs, R8.)"""
    tenant = f"t{next(_tenants)}"
    access = setup_tenant(client, tenant)
    subscribe(client, access, "mini")
    add_card(client, tenant, CARD_CHARGES_FAIL)
    renews = add_months(billing.now(), 1)
    advance(client, to=renews.isoformat())  # the renewal is charged, and fails
    with Held(billing) as held:
        for action in actions:
            if action in ("cancel", "resume"):
                portal_action(client, tenant, action)
            else:
                add_card(client, tenant, CARD_OK if action == "good card" else CARD_CHARGES_FAIL)
        events = [e for e in held.events() if json.loads(e[1])["data"].get("tenant_id") == tenant]
    deliveries = [e for e, n in zip(events, copies, strict=False) for _ in range(n)]
    random.Random(seed).shuffle(deliveries)
    for event in deliveries:
        assert post(client, billing, *event).status_code == 200

    # What the provider's books say now.
    sandbox = billing.sandbox
    customer = sandbox.customer(tenant)
    renewal = next(i for i in invoices(client, access) if i["kind"] == "renewal")
    paid = sandbox.charge_state(renewal["id"]).paid_at is not None
    cancelled = customer["cancel_requested_at"] is not None

    assert renewal["status"] == ("paid" if paid else "open")
    expected = "Payment issue" if not paid else ("Canceled subscription" if cancelled else "Active subscription")
    assert badges(client, access) == [expected]
    assert (card(client, access)["expires_on"] is not None) == cancelled
    # Undelivered events are delivered again by the next pass: duplicates, and nothing changes.
    before = client.get("/v1/billing", headers=access.owner_headers).json()
    billing.run_due()
    assert client.get("/v1/billing", headers=access.owner_headers).json() == before
