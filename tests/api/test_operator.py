"""The operator API: tenants, keys, users and tokens, plans, offline subscriptions, the test clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from agentbilling.api.app import create_app
from agentbilling.client import connect
from agentbilling.settings import Settings
from tests.support.http import add_user, assert_problem, card, put_on_plan, set_limit, view
from tests.support.service import OPERATOR_KEY, operator_headers
from tests.support.tenants import advance, open_session, setup_tenant

OP = operator_headers()


def create_tenant(client, tenant_id: str, name: str = "Acme", email: str = "billing@acme.test"):
    return client.post("/v1/tenants", json={"id": tenant_id, "name": name, "billing_email": email}, headers=OP)


# -- tenants ---------------------------------------------------------------------------------


def test_create_a_tenant_and_read_it_back(client):
    r = create_tenant(client, "acme")
    assert r.status_code == 201
    assert r.json() == {"id": "acme", "name": "Acme", "billing_email": "billing@acme.test",
                        "created_at": "2026-01-31T09:00:00Z"}
    assert client.get("/v1/tenants/acme", headers=OP).json() == r.json()


def test_an_existing_tenant_id_is_a_409_and_the_tenant_is_unchanged(client):
    create_tenant(client, "acme")
    advance(client, seconds=3600)
    r = create_tenant(client, "acme", name="Impostor", email="x@evil.test")
    assert_problem(r, 409, "already-exists")
    got = client.get("/v1/tenants/acme", headers=OP).json()
    assert (got["name"], got["billing_email"], got["created_at"]) == ("Acme", "billing@acme.test",
                                                                      "2026-01-31T09:00:00Z")


def test_patch_a_tenant(client):
    create_tenant(client, "acme")
    r = client.patch("/v1/tenants/acme", json={"name": "Acme Corp"}, headers=OP)
    assert r.status_code == 200 and r.json()["name"] == "Acme Corp"
    assert r.json()["billing_email"] == "billing@acme.test"
    r = client.patch("/v1/tenants/acme", json={"billing_email": "ap@acme.test"}, headers=OP)
    assert (r.json()["name"], r.json()["billing_email"]) == ("Acme Corp", "ap@acme.test")
    assert client.get("/v1/tenants/acme", headers=OP).json()["billing_email"] == "ap@acme.test"


def test_an_unknown_tenant_is_404(client):
    assert_problem(client.get("/v1/tenants/ghost", headers=OP), 404)
    assert_problem(client.patch("/v1/tenants/ghost", json={"name": "Ghost"}, headers=OP), 404)
    assert_problem(client.post("/v1/tenants/ghost/api-keys", headers=OP), 404)
    assert_problem(client.post("/v1/tenants/ghost/users", json={"id": "u", "email": "u@x.test", "role": "owner"},
                               headers=OP), 404)
    assert_problem(client.put("/v1/tenants/ghost/subscription", json={"plan_id": "starter"}, headers=OP), 404)


# -- API keys --------------------------------------------------------------------------------


def test_api_keys_are_shown_once_and_a_revoked_key_stops_at_once(client):
    create_tenant(client, "acme")
    first = client.post("/v1/tenants/acme/api-keys", headers=OP)
    second = client.post("/v1/tenants/acme/api-keys", headers=OP)
    assert first.status_code == second.status_code == 201
    assert set(first.json()) == {"id", "key"}
    assert first.json()["id"] != second.json()["id"] and first.json()["key"] != second.json()["key"]
    old = {"Authorization": f"Bearer {first.json()['key']}"}
    new = {"Authorization": f"Bearer {second.json()['key']}"}
    assert client.get("/v1/admission", headers=old).status_code == 200

    r = client.delete(f"/v1/tenants/acme/api-keys/{first.json()['id']}", headers=OP)
    assert r.status_code == 204
    assert_problem(client.get("/v1/admission", headers=old), 401, "unauthorized")
    r = client.post("/v1/sessions", json={"id": "s", "agent_id": "a", "direction": "inbound"}, headers=old)
    assert_problem(r, 401)
    assert client.get("/v1/admission", headers=new).status_code == 200
    r = client.post("/v1/sessions", json={"id": "s", "agent_id": "a", "direction": "inbound"}, headers=new)
    assert r.status_code == 201

    # Revoking it again, or through another tenant, finds no active key.
    assert_problem(client.delete(f"/v1/tenants/acme/api-keys/{first.json()['id']}", headers=OP), 404)
    create_tenant(client, "beta")
    assert_problem(client.delete(f"/v1/tenants/beta/api-keys/{second.json()['id']}", headers=OP), 404)
    assert client.get("/v1/admission", headers=new).status_code == 200


# -- users and tokens --------------------------------------------------------------------------


@pytest.mark.parametrize("role, visible", [("owner", True), ("admin", True), ("member", False), ("viewer", False)])
def test_billing_visible_follows_the_role(client, role, visible):
    create_tenant(client, "acme")
    r = client.post("/v1/tenants/acme/users", json={"id": "u1", "email": "u1@acme.test", "role": role}, headers=OP)
    assert r.status_code == 201
    expected = {"id": "u1", "email": "u1@acme.test", "role": role, "billing_visible": visible}
    assert r.json() == expected
    assert client.get("/v1/tenants/acme/users/u1", headers=OP).json() == expected


def test_a_duplicate_user_is_409(client):
    create_tenant(client, "acme")
    body = {"id": "u1", "email": "u1@acme.test", "role": "owner"}
    client.post("/v1/tenants/acme/users", json=body, headers=OP)
    r = client.post("/v1/tenants/acme/users", json={**body, "role": "viewer"}, headers=OP)
    assert_problem(r, 409, "already-exists")
    assert client.get("/v1/tenants/acme/users/u1", headers=OP).json()["role"] == "owner"


def test_patching_the_role_changes_what_the_user_sees_at_once(client):
    create_tenant(client, "acme")
    headers = add_user(client, "acme", "u1", "member")
    assert_problem(client.get("/v1/billing", headers=headers), 404)

    r = client.patch("/v1/tenants/acme/users/u1", json={"role": "admin"}, headers=OP)
    assert r.status_code == 200 and r.json()["billing_visible"] is True
    assert client.get("/v1/billing", headers=headers).status_code == 200  # the same token

    r = client.patch("/v1/tenants/acme/users/u1", json={"role": "viewer", "email": "new@acme.test"}, headers=OP)
    assert r.json() == {"id": "u1", "email": "new@acme.test", "role": "viewer", "billing_visible": False}
    assert_problem(client.get("/v1/billing", headers=headers), 404)
    assert_problem(client.patch("/v1/tenants/acme/users/ghost", json={"role": "admin"}, headers=OP), 404)


def test_deleting_a_user_ends_their_token_at_once(client):
    create_tenant(client, "acme")
    headers = add_user(client, "acme", "u1", "owner")
    assert client.get("/v1/billing", headers=headers).status_code == 200

    assert client.delete("/v1/tenants/acme/users/u1", headers=OP).status_code == 204
    assert_problem(client.get("/v1/billing", headers=headers), 401, "unauthorized")
    assert_problem(client.get("/v1/tenants/acme/users/u1", headers=OP), 404)
    assert_problem(client.delete("/v1/tenants/acme/users/u1", headers=OP), 404)

    # A new user with the same id does not bring the old token back.
    new_headers = add_user(client, "acme", "u1", "owner")
    assert_problem(client.get("/v1/billing", headers=headers), 401)
    assert client.get("/v1/billing", headers=new_headers).status_code == 200


def test_a_token_comes_with_an_absolute_login_url_and_a_wall_clock_expiry(client):
    create_tenant(client, "acme")
    client.post("/v1/tenants/acme/users", json={"id": "u1", "email": "u1@acme.test", "role": "owner"}, headers=OP)
    before = datetime.now(UTC)
    r = client.post("/v1/tenants/acme/users/u1/tokens", headers=OP)
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"token", "login_url", "expires_at", "login_url_expires_at"}
    url = urlsplit(body["login_url"])
    assert url.scheme in ("http", "https") and url.netloc, body["login_url"]
    assert url.path == "/billing/login"
    # The link carries a single-use code, not the API token: two different credentials.
    assert parse_qs(url.query)["code"] != [body["token"]] and "token" not in parse_qs(url.query)
    link_expires = datetime.fromisoformat(body["login_url_expires_at"].replace("Z", "+00:00"))
    assert before + timedelta(minutes=14) <= link_expires <= datetime.now(UTC) + timedelta(minutes=15)
    # Security time follows the wall clock (not the test clock, which stands at 2026-01-31).
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert expires.tzinfo is not None
    assert before + timedelta(hours=12) - timedelta(minutes=1) <= expires <= datetime.now(UTC) + timedelta(hours=12)

    assert_problem(client.post("/v1/tenants/acme/users/ghost/tokens", headers=OP), 404)


def test_the_login_url_starts_a_cookie_session(client):
    setup_tenant(client)
    login_url = client.post("/v1/tenants/acme/users/u-owner/tokens", headers=OP).json()["login_url"]
    r = client.get(login_url, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/billing"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in [part.strip() for part in cookie.split(";")]  # the public URL is http here
    r = client.get("/v1/billing")  # the cookie alone
    assert r.status_code == 200 and r.json()["cards"][0]["badge"] == "Trial subscription"


@pytest.fixture
def public_client(settings, clock) -> Iterator[TestClient]:
    # Built through validation, as from AGENTBILLING_PUBLIC_URL (a trailing slash is dropped).
    public = Settings(**{**settings.model_dump(), "public_url": "https://billing.example.com/"})
    service = connect(public, clock=clock, upgrade=False)
    try:
        with TestClient(create_app(service)) as c:
            yield c
    finally:
        service.close()


def test_the_login_url_is_built_from_the_public_url(public_client):
    setup_tenant(public_client)
    body = public_client.post("/v1/tenants/acme/users/u-owner/tokens", headers=OP).json()
    assert body["login_url"].startswith("https://billing.example.com/billing/login?code=")
    r = public_client.get(body["login_url"], follow_redirects=False)
    assert r.status_code == 303
    assert "secure" in [part.strip().lower() for part in r.headers["set-cookie"].split(";")]


# -- plans -----------------------------------------------------------------------------------

PLAN_FIELDS = {"id", "name", "price", "included_sessions", "overage_price", "base_session_limit",
               "max_session_limit", "tags", "enterprise"}


def test_the_plan_catalog_has_the_design_fields_and_figures(client):
    r = client.get("/v1/plans", headers=OP)
    assert r.status_code == 200
    plans = r.json()["data"]
    assert [p["id"] for p in plans] == ["starter", "growth", "scale", "outreach", "enterprise"]
    for p in plans:
        assert PLAN_FIELDS <= set(p), p
    figures = {
        p["id"]: (p["name"], p["price"] and (p["price"]["amount"], p["price"]["currency"]), p["included_sessions"],
                  p["overage_price"] and p["overage_price"]["amount"], p["base_session_limit"],
                  p["max_session_limit"], p["tags"], p["enterprise"])
        for p in plans
    }
    assert figures["starter"] == ("Starter", (4900, "USD"), 500, 12, 1000, 5000, [], False)
    assert figures["growth"] == ("Growth", (19900, "USD"), 2500, 9, 5000, 25000, [], False)
    assert figures["scale"] == ("Scale", (79900, "USD"), 12000, 6, 24000, 200000, [], False)
    assert figures["outreach"] == ("Outreach", (14900, "USD"), 2000, 10, 4000, 20000, ["Answered only"], False)
    enterprise = next(p for p in plans if p["id"] == "enterprise")
    assert enterprise["name"] == "Enterprise" and enterprise["enterprise"] is True and enterprise["price"] is None


def test_the_billing_tab_lists_the_same_plans(client):
    acme = setup_tenant(client)
    ids = [p["id"] for p in view(client, acme)["plans"]]
    assert ids == [p["id"] for p in client.get("/v1/plans", headers=OP).json()["data"]]


# -- offline subscriptions ----------------------------------------------------------------------

ENTERPRISE_TERMS = {
    "price": {"amount": 250000, "currency": "USD"},
    "included_sessions": 30000,
    "overage_price": {"amount": 4, "currency": "USD"},
    "base_session_limit": 40000,
    "max_session_limit": 100000,
}


def test_put_subscription_with_enterprise_terms_ends_the_trial_and_applies_the_terms(client):
    acme = setup_tenant(client)
    open_session(client, acme, "during-trial")
    tab = put_on_plan(client, "acme", "enterprise", ENTERPRISE_TERMS)

    current = tab["cards"][0]
    assert current["badge"] == "Active subscription"
    assert current["trial_sessions_left"] is None and current["trial_days_left"] is None
    assert current["next_billing_date"] == "2026-02-28"
    assert current["sessions_count"] == 0  # monthly periods from now: a new counter
    plan = current["plan"]
    assert plan["id"] == "enterprise"
    assert (plan["price"]["amount"], plan["price"]["currency"]) == (250000, "USD")
    assert plan["included_sessions"] == 30000 and plan["overage_price"]["amount"] == 4
    assert (plan["base_session_limit"], plan["max_session_limit"]) == (40000, 100000)
    assert tab["session_limit"] == {"limit": 40000, "base_limit": 40000, "used": 0, "custom": False,
                                    "warning": None}

    # The terms are stored, and the limits are the deal's.
    assert view(client, acme)["cards"][0]["plan"] == plan
    assert_problem(set_limit(client, acme, 100001), 422)
    assert set_limit(client, acme, 100000).json()["session_limit"]["limit"] == 100000

    # The trial is over: its 14 days no longer close the gate.
    advance(client, seconds=20 * 24 * 3600)
    assert open_session(client, acme, "after-trial-days").status_code == 201
    assert card(client, acme)["badge"] == "Active subscription"


def test_put_subscription_on_a_catalog_plan_uses_the_catalog_figures(client):
    acme = setup_tenant(client)
    tab = put_on_plan(client, "acme", "growth")
    assert tab["cards"][0]["plan"]["id"] == "growth"
    assert tab["session_limit"]["limit"] == 5000
    assert tab["admission"] == {"accepting": True, "reason": None, "message": None}
    assert card(client, acme)["plan"]["price"]["amount"] == 19900


# -- the test clock --------------------------------------------------------------------------


def test_the_test_clock_reads_and_moves_forward(client):
    assert client.get("/v1/clock", headers=OP).json() == {"now": "2026-01-31T09:00:00Z"}
    r = client.post("/v1/clock/advance", json={"seconds": 3600}, headers=OP)
    assert (r.status_code, r.json()) == (200, {"now": "2026-01-31T10:00:00Z"})
    r = client.post("/v1/clock/advance", json={"to": "2026-02-01T00:00:00Z"}, headers=OP)
    assert (r.status_code, r.json()) == (200, {"now": "2026-02-01T00:00:00Z"})
    assert client.get("/v1/clock", headers=OP).json() == {"now": "2026-02-01T00:00:00Z"}


def test_the_test_clock_never_moves_back(client):
    advance(client, to="2026-02-01T00:00:00Z")
    assert_problem(client.post("/v1/clock/advance", json={"to": "2026-01-31T23:59:59Z"}, headers=OP), 409)
    assert_problem(client.post("/v1/clock/advance", json={"seconds": -1}, headers=OP), 422)
    assert client.get("/v1/clock", headers=OP).json() == {"now": "2026-02-01T00:00:00Z"}


@pytest.mark.parametrize("body", [{}, {"seconds": 60, "to": "2026-02-01T00:00:00Z"}, {"to": "2026-02-01T00:00:00"},
                                  {"to": "tomorrow"}, {"seconds": "soon"}])
def test_a_clock_advance_needs_exactly_one_of_seconds_or_an_aware_to(client, body):
    assert_problem(client.post("/v1/clock/advance", json=body, headers=OP), 422)
    assert client.get("/v1/clock", headers=OP).json() == {"now": "2026-01-31T09:00:00Z"}


def test_the_test_clock_answers_in_utc_whatever_offset_it_was_given(client):
    r = client.post("/v1/clock/advance", json={"to": "2026-02-01T02:00:00+02:00"}, headers=OP)
    assert r.status_code == 200
    assert r.json() == {"now": "2026-02-01T00:00:00Z"}  # DESIGN: times are ISO 8601 UTC
    assert client.get("/v1/clock", headers=OP).json() == {"now": "2026-02-01T00:00:00Z"}


@pytest.fixture
def wall_clock_client(settings) -> Iterator[TestClient]:
    service = connect(settings.model_copy(update={"test_clock": False}), upgrade=False)
    try:
        with TestClient(create_app(service)) as c:
            yield c
    finally:
        service.close()


def test_with_the_test_clock_off_the_clock_routes_are_404(wall_clock_client):
    client = wall_clock_client
    assert_problem(client.get("/v1/clock", headers=OP), 404)
    assert_problem(client.post("/v1/clock/advance", json={"seconds": 60}, headers=OP), 404)
    # The rest of the operator API works on the wall clock.
    assert create_tenant(client, "acme").status_code == 201


# -- operator authentication -------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-key"},
    {"Authorization": f"Basic {OPERATOR_KEY}"},
    {"Authorization": "Bearer "},
    {"Authorization": f"Bearer {OPERATOR_KEY}x"},
])
def test_the_operator_api_needs_the_operator_key(client, headers):
    r = client.post("/v1/tenants", json={"id": "acme", "name": "Acme", "billing_email": "b@acme.test"},
                    headers=headers)
    assert_problem(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    assert_problem(client.get("/v1/plans", headers=headers), 401)
    assert_problem(client.get("/v1/tenants/acme", headers=OP), 404)  # nothing was created


def test_tenant_keys_and_user_tokens_do_not_open_the_operator_api(client):
    acme = setup_tenant(client)
    for headers in (acme.key_headers, acme.owner_headers):
        assert_problem(client.get("/v1/tenants/acme", headers=headers), 401)
        assert_problem(client.post("/v1/tenants/acme/api-keys", headers=headers), 401)
        assert_problem(client.put("/v1/tenants/acme/subscription", json={"plan_id": "scale"}, headers=headers), 401)
        assert_problem(client.post("/v1/clock/advance", json={"seconds": 60}, headers=headers), 401)
    assert card(client, acme)["badge"] == "Trial subscription"
    assert client.get("/v1/clock", headers=OP).json()["now"] == "2026-01-31T09:00:00Z"
