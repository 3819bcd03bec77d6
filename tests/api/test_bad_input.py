"""Bad input gets a clear 4xx problem+json and changes nothing; Idempotency-Key replays and conflicts."""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import func, select

from agentbilling.storage.tables import api_keys, tenants, users
from tests.support.http import assert_problem, card, message, put_on_plan, session_list, set_limit, view
from tests.support.service import operator_headers
from tests.support.tenants import open_session, setup_tenant

OP = operator_headers()


def count(billing, table, **where) -> int:
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with billing.db.read() as conn:
        return conn.execute(query).scalar_one()


def assert_no_sessions(client, access) -> None:
    assert session_list(client, access) == []
    assert card(client, access)["sessions_count"] == 0


# -- opening a session -------------------------------------------------------------------------

GOOD_SESSION = {"id": "conv-1", "agent_id": "agent-1", "direction": "inbound"}


@pytest.mark.parametrize("body", [
    pytest.param({"agent_id": "agent-1", "direction": "inbound"}, id="missing-id"),
    pytest.param({**GOOD_SESSION, "id": ""}, id="empty-id"),
    pytest.param({**GOOD_SESSION, "id": "   "}, id="whitespace-id"),
    pytest.param({**GOOD_SESSION, "id": "\t\n"}, id="tab-newline-id"),
    pytest.param({**GOOD_SESSION, "id": None}, id="null-id"),
    pytest.param({**GOOD_SESSION, "id": 123}, id="numeric-id"),
    pytest.param({**GOOD_SESSION, "id": "x" * 201}, id="too-long-id"),
    pytest.param({"id": "conv-1", "direction": "inbound"}, id="missing-agent"),
    pytest.param({**GOOD_SESSION, "agent_id": " "}, id="whitespace-agent"),
    pytest.param({**GOOD_SESSION, "direction": "sideways"}, id="unknown-direction"),
    pytest.param({**GOOD_SESSION, "direction": "INBOUND"}, id="uppercase-direction"),
    pytest.param({"id": "conv-1", "agent_id": "agent-1"}, id="missing-direction"),
    pytest.param({**GOOD_SESSION, "priority": "high"}, id="extra-field"),
    pytest.param([GOOD_SESSION], id="a-list"),
])
def test_a_bad_session_open_is_422_and_opens_nothing(client, body):
    acme = setup_tenant(client)
    r = client.post("/v1/sessions", json=body, headers=acme.key_headers)
    problem = assert_problem(r, 422, "invalid-request")
    assert problem["errors"], problem  # says which field is wrong
    assert_no_sessions(client, acme)


def test_a_body_that_is_not_json_is_422(client):
    acme = setup_tenant(client)
    r = client.post("/v1/sessions", content=b"id=conv-1", headers={**acme.key_headers,
                                                                    "Content-Type": "application/json"})
    assert_problem(r, 422)
    r = client.post("/v1/sessions", headers=acme.key_headers)  # no body at all
    assert_problem(r, 422)
    assert_no_sessions(client, acme)


@pytest.mark.parametrize("body", [{}, {"from": "bot"}, {"from": "Customer"}, {"from": None},
                                  {"from_": "customer"}, {"from": "customer", "text": "hello"}])
def test_a_bad_message_is_422_and_changes_nothing(client, body):
    acme = setup_tenant(client)
    open_session(client, acme, "conv-1")
    client.post("/v1/clock/advance", json={"seconds": 2 * 86400}, headers=OP)
    before = client.get("/v1/sessions/conv-1", headers=acme.key_headers).json()
    r = client.post("/v1/sessions/conv-1/messages", json=body, headers=acme.key_headers)
    assert_problem(r, 422)
    assert client.get("/v1/sessions/conv-1", headers=acme.key_headers).json() == before
    assert card(client, acme)["sessions_count"] == 1


# -- the session limit ---------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, -1, -1000, 1.5, "ten", "10", None, True, [10], {"value": 10}, 5001, 10**12])
def test_a_bad_session_limit_is_422_and_keeps_the_limit(client, limit):
    acme = setup_tenant(client)
    put_on_plan(client, "acme", "starter")
    assert set_limit(client, acme, 300).status_code == 200
    problem = assert_problem(set_limit(client, acme, limit), 422)
    if limit == 5001:
        assert "5,000" in problem["detail"]  # the plan's highest, said plainly
    after = view(client, acme)["session_limit"]
    assert (after["limit"], after["custom"]) == (300, True)


@pytest.mark.parametrize("body", [{}, {"limit": 10, "hard": True}, {"max": 10}])
def test_a_session_limit_body_without_exactly_a_limit_is_422(client, body):
    acme = setup_tenant(client)
    put_on_plan(client, "acme", "starter")
    r = client.put("/v1/billing/session-limit", json=body, headers=acme.owner_headers)
    assert_problem(r, 422)
    assert view(client, acme)["session_limit"]["limit"] == 1000


def test_the_plans_highest_limit_itself_is_accepted(client):
    acme = setup_tenant(client)
    put_on_plan(client, "acme", "starter")
    assert set_limit(client, acme, 5000).json()["session_limit"]["limit"] == 5000
    assert set_limit(client, acme, 1).json()["session_limit"]["limit"] == 1


def test_a_session_limit_on_the_trial_is_409(client):
    acme = setup_tenant(client)
    assert_problem(set_limit(client, acme, 10), 409, "session-limit-unavailable")
    assert_problem(client.delete("/v1/billing/session-limit", headers=acme.owner_headers), 409)
    tab = view(client, acme)
    assert tab["session_limit"] is None
    assert tab["cards"][0]["badge"] == "Trial subscription"


# -- offline subscriptions -----------------------------------------------------------------------


def test_an_unknown_plan_is_404_and_the_tenant_stays_on_its_trial(client):
    acme = setup_tenant(client)
    r = client.put("/v1/tenants/acme/subscription", json={"plan_id": "platinum"}, headers=OP)
    assert_problem(r, 404, "not-found")
    current = card(client, acme)
    assert (current["badge"], current["trial_days_left"]) == ("Trial subscription", 14)


@pytest.mark.parametrize("body", [
    pytest.param({}, id="missing-plan"),
    pytest.param({"plan_id": ""}, id="empty-plan"),
    pytest.param({"plan_id": "starter", "discount": 50}, id="extra-field"),
    pytest.param({"plan_id": "starter", "terms": {"price": {"amount": -1, "currency": "USD"}}}, id="negative-price"),
    pytest.param({"plan_id": "starter", "terms": {"price": {"amount": 100, "currency": "usd"}}}, id="bad-currency"),
    pytest.param({"plan_id": "starter", "terms": {"base_session_limit": 0}}, id="zero-limit"),
    pytest.param({"plan_id": "starter", "terms": {"base_session_limit": 6000}}, id="base-above-highest"),
    pytest.param({"plan_id": "enterprise", "terms": {"base_session_limit": 20, "max_session_limit": 10}},
                 id="base-above-max"),
    pytest.param({"plan_id": "starter", "terms": {"seats": 3}}, id="unknown-term"),
])
def test_bad_subscription_terms_are_422_and_change_nothing(client, body):
    acme = setup_tenant(client)
    r = client.put("/v1/tenants/acme/subscription", json=body, headers=OP)
    assert_problem(r, 422)
    tab = view(client, acme)
    assert tab["cards"][0]["badge"] == "Trial subscription" and tab["session_limit"] is None


# -- lists -------------------------------------------------------------------------------------


def _cursor(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    pytest.param("not a cursor!", id="garbage"),
    pytest.param("abc", id="short"),
    pytest.param(_cursor([1, 2]), id="numbers"),
    pytest.param(_cursor("conv-1"), id="a-string"),
    pytest.param(_cursor(["yesterday", "conv-1"]), id="not-a-date"),
    pytest.param(_cursor(["2026-01-31T09:00:00+00:00", "conv-1", "x"]), id="three-parts"),
    pytest.param(_cursor(["2026-01-31T09:00:00", "conv-1"]), id="naive-time"),
])
def test_an_invalid_cursor_is_422(client, cursor):
    acme = setup_tenant(client)
    open_session(client, acme, "conv-1")
    r = client.get("/v1/billing/sessions", params={"cursor": cursor}, headers=acme.owner_headers)
    assert_problem(r, 422)


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "1.5"])
def test_an_invalid_page_size_is_422(client, limit):
    acme = setup_tenant(client)
    r = client.get("/v1/billing/sessions", params={"limit": limit}, headers=acme.owner_headers)
    assert_problem(r, 422)


def test_cursor_pages_walk_every_session_once_newest_first(client):
    acme = setup_tenant(client)
    for n in range(5):
        open_session(client, acme, f"s-{n}")
        if n == 2:
            client.post("/v1/clock/advance", json={"seconds": 60}, headers=OP)
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/billing/sessions", params=params, headers=acme.owner_headers).json()
        assert len(page["data"]) <= 2
        seen += [s["id"] for s in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Newest first; sessions started at the same instant come by id, descending.
    assert seen == ["s-4", "s-3", "s-2", "s-1", "s-0"]


# -- operator input ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    pytest.param({"name": "Acme", "billing_email": "b@acme.test"}, id="missing-id"),
    pytest.param({"id": "", "name": "Acme", "billing_email": "b@acme.test"}, id="empty-id"),
    pytest.param({"id": "   ", "name": "Acme", "billing_email": "b@acme.test"}, id="whitespace-id"),
    pytest.param({"id": "a cme", "name": "Acme", "billing_email": "b@acme.test"}, id="space-in-id"),
    pytest.param({"id": "-acme", "name": "Acme", "billing_email": "b@acme.test"}, id="leading-dash"),
    pytest.param({"id": "a/b", "name": "Acme", "billing_email": "b@acme.test"}, id="slash"),
    pytest.param({"id": "a" * 65, "name": "Acme", "billing_email": "b@acme.test"}, id="too-long"),
    pytest.param({"id": "acme", "name": " ", "billing_email": "b@acme.test"}, id="blank-name"),
    pytest.param({"id": "acme", "name": "Acme", "billing_email": "not-an-email"}, id="bad-email"),
    pytest.param({"id": "acme", "name": "Acme"}, id="missing-email"),
    pytest.param({"id": "acme", "name": "Acme", "billing_email": "b@acme.test", "plan": "starter"},
                 id="extra-field"),
])
def test_a_bad_tenant_is_422_and_creates_nothing(client, billing, body):
    r = client.post("/v1/tenants", json=body, headers=OP)
    assert_problem(r, 422, "invalid-request")
    assert count(billing, tenants) == 0


def test_a_bad_tenant_patch_is_422_and_changes_nothing(client):
    client.post("/v1/tenants", json={"id": "acme", "name": "Acme", "billing_email": "b@acme.test"}, headers=OP)
    for body in ({"billing_email": "nope"}, {"name": ""}, {"id": "other"}):
        assert_problem(client.patch("/v1/tenants/acme", json=body, headers=OP), 422)
    got = client.get("/v1/tenants/acme", headers=OP).json()
    assert (got["id"], got["name"], got["billing_email"]) == ("acme", "Acme", "b@acme.test")


@pytest.mark.parametrize("body", [
    pytest.param({"id": "u1", "email": "u1@acme.test", "role": "Owner"}, id="uppercase-role"),
    pytest.param({"id": "u1", "email": "u1@acme.test", "role": ""}, id="empty-role"),
    pytest.param({"id": "u1", "email": "u1@acme.test"}, id="missing-role"),
    pytest.param({"id": " ", "email": "u1@acme.test", "role": "owner"}, id="blank-id"),
    pytest.param({"id": "u1", "email": "u1", "role": "owner"}, id="bad-email"),
    pytest.param({"id": "u1", "email": "u1@acme.test", "role": "owner", "admin": True}, id="extra-field"),
])
def test_a_bad_user_is_422_and_creates_nothing(client, billing, body):
    client.post("/v1/tenants", json={"id": "acme", "name": "Acme", "billing_email": "b@acme.test"}, headers=OP)
    assert_problem(client.post("/v1/tenants/acme/users", json=body, headers=OP), 422)
    assert count(billing, users, tenant_id="acme") == 0


def test_a_bad_role_patch_is_422_and_keeps_the_role(client):
    setup_tenant(client)
    r = client.patch("/v1/tenants/acme/users/u-owner", json={"role": "Super Admin"}, headers=OP)
    assert_problem(r, 422)
    assert client.get("/v1/tenants/acme/users/u-owner", headers=OP).json()["role"] == "owner"


# -- Idempotency-Key -------------------------------------------------------------------------------


def test_a_replayed_post_returns_the_same_answer_and_creates_nothing_new(client, billing):
    client.post("/v1/tenants", json={"id": "acme", "name": "Acme", "billing_email": "b@acme.test"}, headers=OP)
    headers = {**OP, "Idempotency-Key": "key-create-1"}
    first = client.post("/v1/tenants/acme/api-keys", headers=headers)
    again = client.post("/v1/tenants/acme/api-keys", headers=headers)
    assert first.status_code == again.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    # The same answer, but the key itself was shown once, to the first answer: it is not stored
    # (issue 13/14), so the replay names it null and says so.
    assert again.json() == {**first.json(), "key": None}
    assert again.headers["idempotent-secret-removed"] == "key"
    assert count(billing, api_keys, tenant_id="acme") == 1
    first_key = {"Authorization": f"Bearer {first.json()['key']}"}
    assert client.get("/v1/admission", headers=first_key).status_code == 200

    # Another key is another request.
    other = client.post("/v1/tenants/acme/api-keys", headers={**OP, "Idempotency-Key": "key-create-2"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert count(billing, api_keys, tenant_id="acme") == 2


def test_a_replayed_session_open_counts_once(client):
    acme = setup_tenant(client)
    headers = {**acme.key_headers, "Idempotency-Key": "open-conv-1"}
    first = client.post("/v1/sessions", json=GOOD_SESSION, headers=headers)
    again = client.post("/v1/sessions", json=GOOD_SESSION, headers=headers)
    assert first.status_code == 201
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert card(client, acme)["sessions_count"] == 1


def test_the_same_key_with_another_body_is_422_and_does_nothing(client, billing):
    headers = {**OP, "Idempotency-Key": "tenant-1"}
    r = client.post("/v1/tenants", json={"id": "acme", "name": "Acme", "billing_email": "b@acme.test"},
                    headers=headers)
    assert r.status_code == 201
    r = client.post("/v1/tenants", json={"id": "beta", "name": "Beta", "billing_email": "b@beta.test"},
                    headers=headers)
    assert_problem(r, 422, "idempotency-key-reused")
    assert count(billing, tenants) == 1
    assert_problem(client.get("/v1/tenants/beta", headers=OP), 404)


def test_a_failed_request_is_not_kept_so_its_key_can_be_used_again(client):
    headers = {**OP, "Idempotency-Key": "tenant-1"}
    r = client.post("/v1/tenants", json={"id": "acme", "name": "Acme", "billing_email": "nope"}, headers=headers)
    assert_problem(r, 422)
    r = client.post("/v1/tenants", json={"id": "acme", "name": "Acme", "billing_email": "b@acme.test"},
                    headers=headers)
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers


def test_a_refused_session_with_a_key_is_admitted_on_retry_once_the_gate_opens(client):
    acme = setup_tenant(client)
    put_on_plan(client, "acme", "starter")
    set_limit(client, acme, 1)
    open_session(client, acme, "first")
    headers = {**acme.key_headers, "Idempotency-Key": "open-second"}
    body = {**GOOD_SESSION, "id": "second"}
    assert_problem(client.post("/v1/sessions", json=body, headers=headers), 402, "session-limit-reached")
    set_limit(client, acme, 2)
    r = client.post("/v1/sessions", json=body, headers=headers)
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers
    assert card(client, acme)["sessions_count"] == 2


def test_keys_are_scoped_to_the_caller(client):
    acme = setup_tenant(client, "acme")
    beta = setup_tenant(client, "beta")
    a = client.post("/v1/sessions", json=GOOD_SESSION, headers={**acme.key_headers, "Idempotency-Key": "k"})
    b = client.post("/v1/sessions", json=GOOD_SESSION, headers={**beta.key_headers, "Idempotency-Key": "k"})
    assert a.status_code == b.status_code == 201
    assert "idempotent-replayed" not in b.headers
    assert card(client, acme)["sessions_count"] == card(client, beta)["sessions_count"] == 1


def test_an_overlong_idempotency_key_is_400_and_does_nothing(client, billing):
    client.post("/v1/tenants", json={"id": "acme", "name": "Acme", "billing_email": "b@acme.test"}, headers=OP)
    r = client.post("/v1/tenants/acme/api-keys", headers={**OP, "Idempotency-Key": "k" * 256})
    assert_problem(r, 400, "invalid-idempotency-key")
    assert count(billing, api_keys, tenant_id="acme") == 0


def test_an_idempotency_key_works_on_the_longest_valid_path(client):
    """A 64-character tenant id and a 200-character user id are valid; the key must not break the request."""
    tenant_id, user_id = "t" * 64, "u" * 200
    assert client.post("/v1/tenants", json={"id": tenant_id, "name": "Long", "billing_email": "b@long.test"},
                       headers=OP).status_code == 201
    r = client.post(f"/v1/tenants/{tenant_id}/users", json={"id": user_id, "email": "u@long.test", "role": "owner"},
                    headers={**OP, "Idempotency-Key": "user-1"})
    assert r.status_code == 201, r.text
    headers = {**OP, "Idempotency-Key": "token-1"}
    first = client.post(f"/v1/tenants/{tenant_id}/users/{user_id}/tokens", headers=headers)
    assert first.status_code == 201, first.text
    again = client.post(f"/v1/tenants/{tenant_id}/users/{user_id}/tokens", headers=headers)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == {**first.json(), "token": None, "login_url": None}  # secrets are not stored


def test_a_replay_needs_the_same_path(client, billing):
    setup_tenant(client, "acme")
    setup_tenant(client, "beta")
    headers = {**OP, "Idempotency-Key": "same-key"}
    a = client.post("/v1/tenants/acme/api-keys", headers=headers)
    b = client.post("/v1/tenants/beta/api-keys", headers=headers)
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert count(billing, api_keys, tenant_id="beta") == 2  # setup_tenant's and this one


def test_the_message_problem_for_an_ended_session_keeps_the_session(client):
    acme = setup_tenant(client)
    open_session(client, acme, "conv-1")
    client.post("/v1/sessions/conv-1/end", headers=acme.key_headers)
    assert_problem(message(client, acme, "conv-1"), 409, "session-ended")
    assert [s["status"] for s in session_list(client, acme)] == ["ended"]


# -- numbers too big to mean anything ------------------------------------------------------------


@pytest.mark.parametrize("raw", [b'{"seconds": 1e20}', b'{"seconds": 1e300}', b'{"seconds": Infinity}'])
def test_an_absurd_clock_advance_is_a_4xx_and_the_clock_stays(client, raw):
    r = client.post("/v1/clock/advance", content=raw, headers={**OP, "Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert_problem(r, r.status_code)
    assert client.get("/v1/clock", headers=OP).json() == {"now": "2026-01-31T09:00:00Z"}


def test_a_session_limit_too_big_to_store_is_422_on_a_plan_without_a_highest_limit(client):
    acme = setup_tenant(client)
    put_on_plan(client, "acme", "enterprise")  # no highest limit: any positive whole number is allowed
    assert set_limit(client, acme, 10**9).json()["session_limit"]["limit"] == 10**9
    assert_problem(set_limit(client, acme, 10**19), 422)
    assert view(client, acme)["session_limit"]["limit"] == 10**9


def test_terms_too_big_to_store_never_break_the_gate(client):
    acme = setup_tenant(client)
    r = client.put("/v1/tenants/acme/subscription",
                   json={"plan_id": "enterprise", "terms": {"base_session_limit": 10**19}}, headers=OP)
    if r.status_code == 200:  # accepted: then the tenant's agents must keep working
        assert open_session(client, acme, "after-the-deal").status_code == 201
        assert client.get("/v1/admission", headers=acme.key_headers).json()["accepting"] is True
    else:  # refused up front: a clear 422, and the tenant is still on its trial
        assert_problem(r, 422)
        assert card(client, acme)["badge"] == "Trial subscription"


def test_an_admitted_session_id_can_always_be_addressed(client):
    """An id with a slash is either refused at the door or reachable (percent-encoded) afterwards."""
    acme = setup_tenant(client)
    r = open_session(client, acme, "chat/42")
    if r.status_code == 422:
        assert_no_sessions(client, acme)
        return
    assert r.status_code == 201
    assert client.post("/v1/sessions/chat%2F42/messages", json={"from": "customer"},
                       headers=acme.key_headers).status_code == 200
    assert client.get("/v1/sessions/chat%2F42", headers=acme.key_headers).json()["id"] == "chat/42"
    assert client.post("/v1/sessions/chat%2F42/end", headers=acme.key_headers).status_code == 200


def test_unknown_routes_and_methods_answer_in_problem_json(client):
    acme = setup_tenant(client)
    assert_problem(client.get("/v1/nowhere", headers=acme.key_headers), 404, "not-found")
    assert_problem(client.delete("/v1/sessions", headers=acme.key_headers), 405, "method-not-allowed")
    assert_no_sessions(client, acme)
