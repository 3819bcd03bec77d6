"""A small catalog and the steps a tenant's owner and the sandbox portal take, for the
subscription tests: subscribe, change plan, cancel, pay, advance the test clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentbilling.settings import Settings
from tests.support.http import assert_problem, view
from tests.support.service import OPERATOR_KEY, operator_headers
from tests.support.tenants import TenantAccess, open_session, setup_tenant

CARD_OK = "4242424242424242"
CARD_CHARGES_FAIL = "4000000000000341"
CARD_DECLINED = "4000000000000002"

PAYMENT_OVERDUE = "Your payment is overdue and the grace period has expired."

# Limits small enough to reach over HTTP in a test; the Stripe stand-in gets the same prices.
PLANS = {"plans": [
    {"id": "mini", "name": "Mini", "price": {"amount": 1000, "currency": "USD"}, "included_sessions": 2,
     "overage_price": {"amount": 100, "currency": "USD"}, "base_session_limit": 3, "max_session_limit": 10,
     "provider_price_id": "price_mini"},
    {"id": "maxi", "name": "Maxi", "price": {"amount": 3000, "currency": "USD"}, "included_sessions": 5,
     "overage_price": {"amount": 50, "currency": "USD"}, "base_session_limit": 6, "max_session_limit": 20,
     "provider_price_id": "price_maxi"},
    {"id": "reach", "name": "Reach", "price": {"amount": 2000, "currency": "USD"}, "included_sessions": 4,
     "overage_price": {"amount": 50, "currency": "USD"}, "base_session_limit": 8, "max_session_limit": 8,
     "tags": ["Answered only"], "provider_price_id": "price_reach"},
    {"id": "euro", "name": "Euro", "price": {"amount": 900, "currency": "EUR"}, "included_sessions": 2,
     "base_session_limit": 3, "max_session_limit": 10, "provider_price_id": "price_euro"},
    {"id": "vip", "name": "VIP", "price": {"amount": 500, "currency": "USD"}, "base_session_limit": 3,
     "max_session_limit": 3, "available_to": ["someone-else"]},
    {"id": "enterprise", "name": "Enterprise", "enterprise": True},
]}


STRIPE_PRICES = [
    {"id": "price_mini", "unit_amount": 1000, "product_name": "Mini"},
    {"id": "price_maxi", "unit_amount": 3000, "product_name": "Maxi"},
    {"id": "price_reach", "unit_amount": 2000, "product_name": "Reach"},
    {"id": "price_euro", "unit_amount": 900, "currency": "eur", "product_name": "Euro"},
]


def plans_file(folder: Path) -> str:
    path = folder / "plans.json"
    path.write_text(json.dumps(PLANS))
    return str(path)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """The test deployment with the small catalog (a module imports this fixture to use it)."""
    return Settings(database_url=database_url, operator_key=OPERATOR_KEY, secret_key="test-secret-key",
                    test_clock=True, db_pool_size=8, plans_file=plans_file(tmp_path))


@pytest.fixture
def acme(client) -> TenantAccess:
    return setup_tenant(client, "acme")


def undelivered(billing) -> list[Any]:
    """The sandbox's events not yet delivered, in order: (id, body) rows."""
    from sqlalchemy import select

    from agentbilling.storage.tables import sandbox_events

    e = sandbox_events.c
    with billing.db.read() as conn:
        return conn.execute(select(e.id, e.body).where(e.delivered_at.is_(None)).order_by(e.seq)).all()


def checkout(client, access: TenantAccess, plan_id: str):
    return client.post("/v1/billing/checkout", json={"plan_id": plan_id}, headers=access.owner_headers)


def complete(client, checkout_id: str, card: str = CARD_OK):
    return client.post(f"/v1/sandbox/checkouts/{checkout_id}/complete", json={"card": card},
                       headers=operator_headers())


def subscribe(client, access: TenantAccess, plan_id: str, card: str = CARD_OK) -> dict[str, Any]:
    r = checkout(client, access, plan_id)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["url"].endswith(f"/sandbox/checkout/{body['id']}")
    r = complete(client, body["id"], card)
    assert r.status_code == 200, r.text
    return view(client, access)


def change_plan(client, access: TenantAccess, plan_id: str, when: str, date: str | None = None):
    body: dict[str, Any] = {"plan_id": plan_id, "when": when}
    if date is not None:
        body["date"] = date
    return client.post("/v1/billing/plan-change", json=body, headers=access.owner_headers)


def add_card(client, tenant_id: str, card: str):
    return client.post(f"/v1/sandbox/tenants/{tenant_id}/payment-methods", json={"card": card},
                       headers=operator_headers())


def portal_action(client, tenant_id: str, action: str):
    return client.post(f"/v1/sandbox/tenants/{tenant_id}/{action}", headers=operator_headers())


def invoices(client, access: TenantAccess) -> list[dict[str, Any]]:
    r = client.get("/v1/billing/invoices", headers=access.owner_headers)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def badges(client, access: TenantAccess) -> list[str]:
    return [c["badge"] for c in view(client, access)["cards"]]


def fill(client, access: TenantAccess, prefix: str, n: int) -> None:
    for i in range(n):
        r = open_session(client, access, f"{prefix}-{i}")
        assert r.status_code == 201, r.text


def refused(client, access: TenantAccess, session_id: str, reason: str, detail: str | None = None) -> None:
    assert_problem(open_session(client, access, session_id), 402, reason, detail)


def admitted(client, access: TenantAccess, session_id: str) -> None:
    r = open_session(client, access, session_id)
    assert r.status_code == 201, r.text

