"""Issue 14: the tenant × role × endpoint matrix, generated from the app's routes. Every route has an
entry in ROUTES saying who may call it (a new route without one fails `test_every_route_has_an_entry`),
and for each: an anonymous call is 401 (or, for capability URLs, 404), a credential of the wrong kind
is 401, every role without billing rights finds no billing (404), and another tenant's ids are 404."""

from __future__ import annotations

from typing import Any

import pytest

from agentbilling.api.app import create_app
from agentbilling.settings import Settings
from tests.support.http import add_user
from tests.support.service import operator_headers
from tests.support.subscribing import subscribe
from tests.support.tenants import TenantAccess, open_session, setup_tenant

OPERATOR, RUNTIME, BILLING, PAGE, CAPABILITY, PROVIDER, PUBLIC = (
    "operator", "runtime", "billing", "page", "capability", "provider", "public")

# (method, OpenAPI path) -> (who may call it, a body that would be valid)
ROUTES: dict[tuple[str, str], tuple[str, Any]] = {
    ("POST", "/v1/sessions"): (RUNTIME, {"id": "s-new", "agent_id": "a", "direction": "inbound"}),
    ("POST", "/v1/sessions/{session_id}/messages"): (RUNTIME, {"from": "customer"}),
    ("POST", "/v1/sessions/{session_id}/end"): (RUNTIME, None),
    ("GET", "/v1/sessions/{session_id}"): (RUNTIME, None),
    ("GET", "/v1/admission"): (RUNTIME, None),
    ("POST", "/v1/tenants"): (OPERATOR, {"id": "gamma", "name": "G", "billing_email": "b@g.test"}),
    ("GET", "/v1/tenants/{tenant_id}"): (OPERATOR, None),
    ("PATCH", "/v1/tenants/{tenant_id}"): (OPERATOR, {"name": "New"}),
    ("POST", "/v1/tenants/{tenant_id}/api-keys"): (OPERATOR, None),
    ("DELETE", "/v1/tenants/{tenant_id}/api-keys/{key_id}"): (OPERATOR, None),
    ("POST", "/v1/tenants/{tenant_id}/users"): (OPERATOR, {"id": "u9", "email": "u9@x.test", "role": "owner"}),
    ("GET", "/v1/tenants/{tenant_id}/users/{user_id}"): (OPERATOR, None),
    ("PATCH", "/v1/tenants/{tenant_id}/users/{user_id}"): (OPERATOR, {"role": "owner"}),
    ("DELETE", "/v1/tenants/{tenant_id}/users/{user_id}"): (OPERATOR, None),
    ("POST", "/v1/tenants/{tenant_id}/users/{user_id}/tokens"): (OPERATOR, None),
    ("GET", "/v1/plans"): (OPERATOR, None),
    ("PUT", "/v1/tenants/{tenant_id}/subscription"): (OPERATOR, {"plan_id": "starter"}),
    ("GET", "/v1/clock"): (OPERATOR, None),
    ("POST", "/v1/clock/advance"): (OPERATOR, {"seconds": 1}),
    ("GET", "/v1/demo-requests"): (OPERATOR, None),
    ("GET", "/v1/worker"): (OPERATOR, None),
    ("GET", "/v1/webhook-endpoints"): (OPERATOR, None),
    ("POST", "/v1/webhook-endpoints"): (OPERATOR, {"url": "https://hooks.example.invalid/x"}),
    ("GET", "/v1/webhook-endpoints/{endpoint_id}"): (OPERATOR, None),
    ("DELETE", "/v1/webhook-endpoints/{endpoint_id}"): (OPERATOR, None),
    ("GET", "/v1/webhook-endpoints/{endpoint_id}/deliveries"): (OPERATOR, None),
    ("POST", "/v1/sandbox/checkouts/{checkout_id}/complete"): (OPERATOR, {"card": "4242424242424242"}),
    ("POST", "/v1/sandbox/tenants/{tenant_id}/payment-methods"): (OPERATOR, {"card": "4242424242424242"}),
    ("POST", "/v1/sandbox/tenants/{tenant_id}/cancel"): (OPERATOR, None),
    ("POST", "/v1/sandbox/tenants/{tenant_id}/resume"): (OPERATOR, None),
    ("GET", "/v1/billing"): (BILLING, None),
    ("PUT", "/v1/billing/session-limit"): (BILLING, {"limit": 10}),
    ("DELETE", "/v1/billing/session-limit"): (BILLING, None),
    ("GET", "/v1/billing/sessions"): (BILLING, None),
    ("POST", "/v1/billing/checkout"): (BILLING, {"plan_id": "growth"}),
    ("POST", "/v1/billing/portal"): (BILLING, None),
    ("POST", "/v1/billing/plan-change"): (BILLING, {"plan_id": "growth", "when": "immediately"}),
    ("DELETE", "/v1/billing/plan-change"): (BILLING, None),
    ("POST", "/v1/billing/demo-requests"): (BILLING, {"plan_id": "enterprise"}),
    ("GET", "/v1/billing/invoices"): (BILLING, None),
    ("GET", "/v1/billing/invoices/{invoice_id}"): (BILLING, None),
    ("GET", "/v1/billing/notices"): (BILLING, None),
    ("GET", "/billing/login"): (PUBLIC, None),  # the code is the credential: test_security_sessions.py
    ("POST", "/billing/login"): (PUBLIC, None),
    ("POST", "/billing/logout"): (PAGE, {}),
    ("GET", "/billing"): (PAGE, None),
    ("POST", "/billing/checkout"): (PAGE, {"plan_id": "growth"}),
    ("POST", "/billing/manage"): (PAGE, {}),
    ("GET", "/billing/plans/{plan_id}/change"): (PAGE, None),
    ("POST", "/billing/plan-change"): (PAGE, {"plan_id": "growth", "when": "immediately"}),
    ("GET", "/billing/scheduled-plan/cancel"): (PAGE, None),
    ("POST", "/billing/scheduled-plan/cancel"): (PAGE, {}),
    ("POST", "/billing/session-limit"): (PAGE, {"limit": "10"}),
    ("POST", "/billing/session-limit/reset"): (PAGE, {}),
    ("GET", "/billing/plans/{plan_id}/demo"): (PAGE, None),
    ("POST", "/billing/demo-requests"): (PAGE, {"plan_id": "enterprise"}),
    ("GET", "/sandbox/checkout/{checkout_id}"): (CAPABILITY, None),
    ("POST", "/sandbox/checkout/{checkout_id}"): (CAPABILITY, {"card": "4242424242424242"}),
    ("GET", "/sandbox/portal/{token}"): (CAPABILITY, None),
    ("POST", "/sandbox/portal/{token}/payment-methods"): (CAPABILITY, {"card": "4242424242424242"}),
    ("POST", "/sandbox/portal/{token}/cancel"): (CAPABILITY, {"confirm": "yes"}),
    ("POST", "/sandbox/portal/{token}/resume"): (CAPABILITY, {}),
    ("GET", "/sandbox/portal/{token}/invoices/{invoice_id}"): (CAPABILITY, None),
    ("POST", "/v1/webhooks/{provider}"): (PROVIDER, None),  # the signature: test_webhooks.py, test_stripe.py
    ("GET", "/livez"): (PUBLIC, None),
    ("GET", "/readyz"): (PUBLIC, None),
}
NON_BILLING_ROLES = sorted(Settings().roles - Settings().billing_roles)


def _app_routes() -> list[tuple[str, str]]:
    spec = create_app(settings=Settings(database_url="sqlite://")).openapi()  # no connection: only the routes
    return sorted((m.upper(), path) for path, ops in spec["paths"].items() for m in ops)


APP_ROUTES = _app_routes()


def test_every_route_has_an_entry():
    assert set(APP_ROUTES) - set(ROUTES) == set(), "a route without an entry in ROUTES: say who may call it"
    assert set(ROUTES) - set(APP_ROUTES) == set(), "an entry for a route that is gone"


class World:
    """Two tenants with their ids; acme's owner, and a user of each role without billing rights."""

    def __init__(self, client) -> None:
        self.client = client
        self.acme: TenantAccess = setup_tenant(client, "acme")
        self.beta: TenantAccess = setup_tenant(client, "beta")
        assert open_session(client, self.beta, "beta-session").status_code == 201
        subscribe(client, self.beta, "starter")
        self.beta_invoice = client.get("/v1/billing/invoices", headers=self.beta.owner_headers).json()["data"][0]["id"]
        self.roles = {role: add_user(client, "acme", f"u-{role}", role) for role in NON_BILLING_ROLES}

    def path(self, template: str, *, other_tenant: bool) -> str:
        values = {"tenant_id": "acme", "user_id": "u-owner", "key_id": "key_x", "endpoint_id": "we_x",
                  "checkout_id": "cs_x", "token": "x", "provider": "sandbox", "plan_id": "growth",
                  "session_id": "beta-session" if other_tenant else "s-1",
                  "invoice_id": self.beta_invoice if other_tenant else "in_x"}
        return template.format(**values)


@pytest.fixture
def world(client) -> World:
    return World(client)


def _call(client, method: str, path: str, body: Any, headers: dict[str, str], page: bool):
    if body is None:
        return client.request(method, path, headers=headers, follow_redirects=False)
    if page or path.startswith("/sandbox/"):
        return client.request(method, path, data=body, headers=headers, follow_redirects=False)
    return client.request(method, path, json=body, headers=headers, follow_redirects=False)


@pytest.mark.parametrize("method,path", APP_ROUTES, ids=[f"{m} {p}" for m, p in APP_ROUTES])
def test_the_access_matrix(world, method, path):
    client = world.client
    kind, body = ROUTES[(method, path)]
    own = world.path(path, other_tenant=False)
    page = kind == PAGE
    client.cookies.clear()
    anonymous = _call(client, method, own, body, {}, page)
    if kind in (OPERATOR, RUNTIME, BILLING, PAGE):
        assert anonymous.status_code == 401, (method, path, anonymous.text)
    if kind == CAPABILITY:  # the unguessable id in the URL is the credential: a wrong one finds nothing
        assert anonymous.status_code == 404, (method, path, anonymous.text)
    if kind == OPERATOR:
        for wrong in (world.acme.key_headers, world.acme.owner_headers):
            assert _call(client, method, own, body, wrong, page).status_code == 401, (method, path)
    if kind == RUNTIME:
        assert _call(client, method, own, body, world.acme.owner_headers, page).status_code == 401
        assert _call(client, method, own, body, operator_headers(), page).status_code == 401
        if "{session_id}" in path:  # beta's session, asked for with acme's key
            r = _call(client, method, world.path(path, other_tenant=True), body, world.acme.key_headers, page)
            assert r.status_code == 404, (method, path, r.text)
    if kind == BILLING:
        assert _call(client, method, own, body, world.acme.key_headers, page).status_code == 401
        assert _call(client, method, own, body, operator_headers(), page).status_code == 401
        for role, headers in world.roles.items():
            r = _call(client, method, own, body, headers, page)
            assert r.status_code == 404, (role, method, path, r.text)
        if "{invoice_id}" in path:  # beta's invoice, asked for by acme's owner
            r = _call(client, method, world.path(path, other_tenant=True), body, world.acme.owner_headers, page)
            assert r.status_code == 404, (method, path, r.text)
    if kind == PAGE:
        for role in world.roles:  # no role without billing rights gets a session of the tab
            link = client.post(f"/v1/tenants/acme/users/u-{role}/tokens", headers=operator_headers()).json()
            r = client.get(link["login_url"], follow_redirects=False)
            assert r.status_code == 404 and "set-cookie" not in r.headers, (role, r.text)
            assert _call(client, method, own, body, {}, page).status_code == 401
