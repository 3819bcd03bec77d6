"""Assertions and small steps the HTTP API tests share (on top of tests/support/tenants.py)."""

from __future__ import annotations

from typing import Any

from tests.support.service import operator_headers
from tests.support.tenants import TenantAccess

PROBLEM_TYPE_BASE = "https://agentbilling.dev/problems/"
SUBSCRIPTION_ENDED = "Your subscription has ended. Please upgrade your plan to continue."
SUBSCRIPTION_ENDED_HELP = "The trial or plan has expired. Subscribe to a paid plan in the Plans section."
PAYMENT_OVERDUE_HELP = "Click Manage on the subscription card and settle the failed payment in the billing portal."
LIMIT_REACHED = "Session limit has been reached"
LIMIT_ALMOST = "Session limit almost reached"


def assert_page(response, status: int, text: str | None = None) -> str:
    """A refusal of the Billing tab's pages: a page for a person (not problem+json) with the status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html"), response.headers
    if text is not None:
        assert text in response.text, response.text
    return response.text


def assert_problem(response, status: int, type_suffix: str | None = None, detail: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem: the status, its media type, a `type` URI, a `detail`; returns the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://"), body
    assert isinstance(body["detail"], str) and body["detail"].strip(), body
    assert body["title"]
    if type_suffix is not None:
        assert body["type"] == PROBLEM_TYPE_BASE + type_suffix, body
    if detail is not None:
        assert body["detail"] == detail, body
    return body


def view(client, access: TenantAccess) -> dict[str, Any]:
    r = client.get("/v1/billing", headers=access.owner_headers)
    assert r.status_code == 200, r.text
    return r.json()


def card(client, access: TenantAccess) -> dict[str, Any]:
    return view(client, access)["cards"][0]


def session_list(client, access: TenantAccess, **params) -> list[dict[str, Any]]:
    r = client.get("/v1/billing/sessions", headers=access.owner_headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def put_on_plan(client, tenant_id: str, plan_id: str, terms: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"plan_id": plan_id}
    if terms is not None:
        body["terms"] = terms
    r = client.put(f"/v1/tenants/{tenant_id}/subscription", json=body, headers=operator_headers())
    assert r.status_code == 200, r.text
    return r.json()


def set_limit(client, access: TenantAccess, limit: Any):
    return client.put("/v1/billing/session-limit", json={"limit": limit}, headers=access.owner_headers)


def message(client, access: TenantAccess, session_id: str, sender: str = "customer"):
    return client.post(f"/v1/sessions/{session_id}/messages", json={"from": sender}, headers=access.key_headers)


def admission(client, access: TenantAccess) -> dict[str, Any]:
    r = client.get("/v1/admission", headers=access.key_headers)
    assert r.status_code == 200, r.text
    return r.json()


def add_user(client, tenant_id: str, user_id: str, role: str) -> dict[str, str]:
    """A user with a role, and the headers that carry a fresh token of theirs."""
    op = operator_headers()
    r = client.post(f"/v1/tenants/{tenant_id}/users",
                    json={"id": user_id, "email": f"{user_id}@{tenant_id}.test", "role": role}, headers=op)
    assert r.status_code == 201, r.text
    r = client.post(f"/v1/tenants/{tenant_id}/users/{user_id}/tokens", headers=op)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}
