"""Who may see what: tenant isolation, billing roles (R13), and who is turned away (401)."""

from __future__ import annotations

import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from tests.support.http import (
    add_user,
    assert_page,
    assert_problem,
    card,
    message,
    put_on_plan,
    session_list,
    set_limit,
    view,
)
from tests.support.service import operator_headers
from tests.support.tenants import open_session, setup_tenant

TOKEN_SALT = "agentbilling.user-token"  # what the service signs user tokens with
TEST_SECRET = "test-secret-key"  # the secret of the test settings


# -- tenant isolation --------------------------------------------------------------------------


def test_another_tenants_key_never_sees_a_tenants_session(client):
    acme = setup_tenant(client, "acme")
    beta = setup_tenant(client, "beta")
    open_session(client, acme, "a-1")

    assert_problem(client.get("/v1/sessions/a-1", headers=beta.key_headers), 404)
    assert_problem(message(client, beta, "a-1"), 404)
    assert_problem(client.post("/v1/sessions/a-1/end", headers=beta.key_headers), 404)

    got = client.get("/v1/sessions/a-1", headers=acme.key_headers).json()
    assert (got["status"], got["billable_sessions"], got["ended_at"]) == ("open", 1, None)


def test_the_same_session_id_in_two_tenants_is_two_sessions(client):
    acme = setup_tenant(client, "acme")
    beta = setup_tenant(client, "beta")
    assert open_session(client, acme, "conv-1").status_code == 201
    r = open_session(client, beta, "conv-1", agent_id="other-agent", direction="outbound")
    assert r.status_code == 201  # not a replay, and not a clash with acme's
    assert r.json()["agent_id"] == "other-agent"
    assert card(client, acme)["sessions_count"] == 1
    assert card(client, beta)["sessions_count"] == 1


def test_an_owner_sees_only_their_own_tenants_sessions_and_usage(client):
    acme = setup_tenant(client, "acme")
    beta = setup_tenant(client, "beta")
    for sid in ("a-1", "a-2", "a-3"):
        open_session(client, acme, sid)
    open_session(client, beta, "b-1")

    assert [s["id"] for s in session_list(client, beta)] == ["b-1"]
    assert {s["id"] for s in session_list(client, acme)} == {"a-1", "a-2", "a-3"}
    assert card(client, beta)["sessions_count"] == 1
    assert card(client, beta)["trial_sessions_left"] == 49


def test_one_tenants_limit_does_not_close_another_tenants_gate(client):
    acme = setup_tenant(client, "acme")
    beta = setup_tenant(client, "beta")
    put_on_plan(client, "acme", "starter")
    put_on_plan(client, "beta", "starter")
    set_limit(client, acme, 1)
    open_session(client, acme, "a-1")
    assert open_session(client, acme, "a-2").status_code == 402
    assert open_session(client, beta, "b-1").status_code == 201
    assert view(client, beta)["session_limit"]["limit"] == 1000


# -- roles (R13) -------------------------------------------------------------------------------

BILLING_ROUTES = [
    ("GET", "/v1/billing", None),
    ("GET", "/v1/billing/sessions", None),
    ("PUT", "/v1/billing/session-limit", {"limit": 10}),
    ("DELETE", "/v1/billing/session-limit", None),
]


@pytest.mark.parametrize("role", ["member", "viewer", "support"])
def test_roles_without_billing_rights_find_no_billing_at_all(client, role):
    acme = setup_tenant(client)
    put_on_plan(client, "acme", "starter")
    set_limit(client, acme, 500)
    headers = add_user(client, "acme", "u-" + role, role)
    for method, path, body in BILLING_ROUTES:
        r = client.request(method, path, json=body, headers=headers)
        assert_problem(r, 404, "not-found")
    assert view(client, acme)["session_limit"]["limit"] == 500  # their PUT/DELETE changed nothing


def test_an_admin_has_billing_rights(client):
    setup_tenant(client)
    put_on_plan(client, "acme", "starter")
    headers = add_user(client, "acme", "u-admin", "admin")
    assert client.get("/v1/billing", headers=headers).status_code == 200
    r = client.put("/v1/billing/session-limit", json={"limit": 42}, headers=headers)
    assert r.status_code == 200 and r.json()["session_limit"]["limit"] == 42
    assert client.delete("/v1/billing/session-limit", headers=headers).json()["session_limit"]["limit"] == 1000
    assert client.get("/v1/billing/sessions", headers=headers).json() == {"data": [], "next_cursor": None}


def test_a_member_cannot_use_the_login_link_to_reach_billing(client):
    setup_tenant(client)
    client.post("/v1/tenants/acme/users", json={"id": "m", "email": "m@acme.test", "role": "member"},
                headers=operator_headers())
    login_url = client.post("/v1/tenants/acme/users/m/tokens", headers=operator_headers()).json()["login_url"]
    r = client.get(login_url, follow_redirects=False)
    assert_page(r, 404, "Not found")
    assert "set-cookie" not in r.headers


# -- who is turned away ------------------------------------------------------------------------


@pytest.mark.parametrize("method, path, body", BILLING_ROUTES)
def test_billing_without_a_token_is_401(client, method, path, body):
    setup_tenant(client)
    r = client.request(method, path, json=body)
    assert_problem(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"


RUNTIME_ROUTES = [
    ("POST", "/v1/sessions", {"id": "s", "agent_id": "a", "direction": "inbound"}),
    ("POST", "/v1/sessions/s/messages", {"from": "customer"}),
    ("POST", "/v1/sessions/s/end", None),
    ("GET", "/v1/sessions/s", None),
    ("GET", "/v1/admission", None),
]


@pytest.mark.parametrize("method, path, body", RUNTIME_ROUTES)
def test_the_agent_runtime_without_a_valid_key_is_401(client, method, path, body):
    acme = setup_tenant(client)
    for headers in ({}, {"Authorization": "Bearer ab_not-a-key"}, acme.owner_headers, operator_headers()):
        assert_problem(client.request(method, path, json=body, headers=headers), 401, "unauthorized")
    assert session_list(client, acme) == []


def test_a_tenant_api_key_is_not_a_user_token(client):
    acme = setup_tenant(client)
    assert_problem(client.get("/v1/billing", headers=acme.key_headers), 401)
    assert_problem(client.get("/v1/billing", headers=operator_headers()), 401)


def _forge(secret: str, claims: list[str], *, age_seconds: int = 0) -> str:
    class Backdated(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_seconds

    return URLSafeTimedSerializer(secret, salt=TOKEN_SALT, signer=Backdated).dumps(claims)


def test_a_forged_token_is_401(client, billing):
    setup_tenant(client)
    nonce = billing.accounts.user_nonce("acme", "u-owner")
    # The right claims, signed with another secret.
    forged = _forge("not-the-secret", ["acme", "u-owner", nonce])
    assert_problem(client.get("/v1/billing", headers={"Authorization": f"Bearer {forged}"}), 401)
    # The right secret, but not the user's nonce.
    forged = _forge(TEST_SECRET, ["acme", "u-owner", "0" * 32])
    assert_problem(client.get("/v1/billing", headers={"Authorization": f"Bearer {forged}"}), 401)
    # Garbage, and a cookie carrying garbage.
    assert_problem(client.get("/v1/billing", headers={"Authorization": "Bearer x.y.z"}), 401)
    client.cookies.set("agentbilling_session", "x.y.z")
    assert_problem(client.get("/v1/billing"), 401)


def test_a_tampered_token_is_401(client):
    acme = setup_tenant(client)
    token = acme.owner_headers["Authorization"].removeprefix("Bearer ")
    payload, rest = token.split(".", 1)
    assert payload.startswith("WyJh")  # base64 of '["a' (the claims start with the tenant, acme)
    beta_claims = "WyJi" + payload[4:]  # '["b...': the same signature over other claims
    assert_problem(client.get("/v1/billing", headers={"Authorization": f"Bearer {beta_claims}.{rest}"}), 401)
    assert client.get("/v1/billing", headers=acme.owner_headers).status_code == 200


def test_an_expired_token_is_401(client, billing):
    setup_tenant(client)
    nonce = billing.accounts.user_nonce("acme", "u-owner")
    ttl = billing.settings.token_ttl_seconds
    fresh = _forge(TEST_SECRET, ["acme", "u-owner", nonce], age_seconds=ttl - 60)
    assert client.get("/v1/billing", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    expired = _forge(TEST_SECRET, ["acme", "u-owner", nonce], age_seconds=ttl + 60)
    assert_problem(client.get("/v1/billing", headers={"Authorization": f"Bearer {expired}"}), 401)
    # A bearer token is not a login code (nor a session id): the tab opens with neither.
    r = client.get(f"/billing/login?code={fresh}", follow_redirects=False)
    assert_page(r, 401, "invalid, has expired or was already used")
    assert "set-cookie" not in r.headers
    client.cookies.set("agentbilling_session", fresh)
    assert_page(client.get("/billing"), 401)


def test_a_token_of_one_tenants_user_only_ever_shows_that_tenant(client):
    acme = setup_tenant(client, "acme")
    beta = setup_tenant(client, "beta")
    open_session(client, acme, "a-1")
    assert session_list(client, beta) == []
    assert card(client, beta)["sessions_count"] == 0
    assert card(client, acme)["sessions_count"] == 1


def test_a_revoked_key_gets_401_even_when_replaying_an_idempotency_key(client):
    op = operator_headers()
    client.post("/v1/tenants", json={"id": "acme", "name": "Acme", "billing_email": "b@acme.test"}, headers=op)
    issued = client.post("/v1/tenants/acme/api-keys", headers=op).json()
    headers = {"Authorization": f"Bearer {issued['key']}", "Idempotency-Key": "open-s1"}
    body = {"id": "s1", "agent_id": "agent-1", "direction": "inbound"}
    assert client.post("/v1/sessions", json=body, headers=headers).status_code == 201

    assert client.delete(f"/v1/tenants/acme/api-keys/{issued['id']}", headers=op).status_code == 204
    r = client.post("/v1/sessions", json=body, headers=headers)
    assert_problem(r, 401, "unauthorized")  # revocation applies at once, stored answers included
    assert "idempotent-replayed" not in r.headers
