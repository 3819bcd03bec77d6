"""Issue 14, bad input: control characters, crafted cursors, odd digits, `/` in user ids, roles,
oversized bodies. Each test is named after the finding it proves fixed."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest

from tests.support.http import add_user, assert_problem, put_on_plan
from tests.support.pages import login, tab_csrf
from tests.support.service import operator_headers
from tests.support.tenants import open_session, setup_tenant

OP = operator_headers()
NUL_INPUTS = ["a\x00b", "\x00", "a\x01b", "tab\x7fdel", "c1\x85x", "a\x1bb"]


# -- finding 1: NUL bytes (and every control character) are 422, never 500 --------------------

@pytest.mark.parametrize("bad", NUL_INPUTS)
def test_finding_1_control_characters_in_body_ids_names_and_emails_are_422(client, bad):
    acme = setup_tenant(client)
    attempts = [
        client.post("/v1/tenants", json={"id": "t2", "name": bad, "billing_email": "b@t2.test"}, headers=OP),
        client.post("/v1/tenants", json={"id": "t2", "name": "T2", "billing_email": f"b{bad}@t2.test"}, headers=OP),
        client.post("/v1/tenants/acme/users", json={"id": bad, "email": "x@acme.test", "role": "owner"}, headers=OP),
        client.patch("/v1/tenants/acme", json={"name": bad}, headers=OP),
        client.post("/v1/sessions", json={"id": bad, "agent_id": "a", "direction": "inbound"},
                    headers=acme.key_headers),
        client.post("/v1/sessions", json={"id": "s", "agent_id": bad, "direction": "inbound"},
                    headers={**acme.key_headers, "Idempotency-Key": "k1"}),
        client.post("/v1/billing/checkout", json={"plan_id": bad}, headers=acme.owner_headers),
        client.post("/v1/billing/demo-requests", json={"plan_id": "enterprise", "message": f"hi{bad}"},
                    headers=acme.owner_headers) if bad not in ("\x85",) else None,
        client.post("/v1/webhook-endpoints", json={"url": f"https://example.com/{bad}"}, headers=OP),
    ]
    for r in attempts:
        if r is not None:
            assert_problem(r, 422)
    assert client.get("/v1/tenants/t2", headers=OP).status_code == 404


@pytest.mark.parametrize("path", [
    "/sandbox/checkout/a%00b", "/v1/tenants/a%00b", "/v1/tenants/acme/users/u%00", "/v1/sessions/a%00b",
    "/v1/billing/invoices/in%00", "/sandbox/portal/x%00y", "/billing/plans/a%00b/change",
    "/v1/billing/sessions?cursor=%00", "/v1/tenants/acme/users/u%01x", "/v1/webhook-endpoints/we%7f",
])
def test_finding_1_control_characters_in_path_ids_are_422_problems(client, path):
    acme = setup_tenant(client)
    headers = acme.key_headers if path.startswith("/v1/sessions") else (
        acme.owner_headers if path.startswith("/v1/billing") else OP)
    assert_problem(client.get(path, headers=headers), 422, "invalid-request")


def test_finding_1_a_nul_id_in_a_group_commit_batch_fails_only_itself(app, live_server):
    """Many admissions under one key at once (they batch); one with a NUL id is 422, the rest 201."""
    with httpx.Client(base_url=live_server.url) as c:
        acme = setup_tenant(c)

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as ac:
            bodies = [{"id": f"s-{i}", "agent_id": "a", "direction": "inbound"} for i in range(20)]
            bodies[7]["id"] = "bad\x00id"
            return await asyncio.gather(*(ac.post("/v1/sessions", json=b, headers=acme.key_headers) for b in bodies))

    answers = asyncio.run(run())
    assert_problem(answers[7], 422, "invalid-request")
    assert [r.status_code for i, r in enumerate(answers) if i != 7] == [201] * 19


def test_finding_1_the_python_api_refuses_a_nul_session_id(billing, tenant):
    from agentbilling.domain.errors import InvalidInput
    with pytest.raises(InvalidInput):
        billing.open_session(tenant, "a\x00b", agent_id="agent", direction="inbound")


# -- finding 8: crafted cursors and the Set limit form's odd digits ---------------------------

def _cursor(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


CRAFTED = [
    _cursor(["0001-01-01T00:00:00+14:00", "x"]), _cursor(["9999-12-31T23:59:59-14:00", "x"]),
    _cursor(["2026-01-01T00:00:00+00:00", "x\x00"]), _cursor(["2026-01-01T00:00:00", "x"]),
    _cursor({"a": 1}), _cursor([1, 2]), _cursor("["), "%%%", "[" * 5000,
    base64.urlsafe_b64encode(b"[" * 3000).decode(), _cursor(["2026-01-01T00:00:00+00:00", "x" * 10_000]),
]


@pytest.mark.parametrize("cursor", CRAFTED)
def test_finding_8_crafted_cursors_are_4xx_on_every_list(client, cursor):
    acme = setup_tenant(client)
    for path, headers in [("/v1/billing/sessions", acme.owner_headers), ("/v1/billing/invoices", acme.owner_headers),
                          ("/v1/billing/notices", acme.owner_headers), ("/v1/demo-requests", OP)]:
        r = client.get(path, params={"cursor": cursor}, headers=headers)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
        assert_problem(r, r.status_code)
    # The tab's own list takes a cursor too: a page, not a 500.
    login(client)
    r = client.get("/billing", params={"cursor": cursor})
    assert r.status_code < 500, r.text


@pytest.mark.parametrize("value", ["²", "①", "9" * 5000, "٣", "１０", "1e3", "-5", "0x10"])
def test_finding_8_set_limit_form_with_odd_digits_is_refused_not_500(client, value):
    acme = setup_tenant(client)
    put_on_plan(client, "acme", "starter")
    login(client)
    csrf = tab_csrf(client)
    r = client.post("/billing/session-limit", data={"limit": value, "csrf": csrf})
    assert r.status_code == 422, r.text
    assert client.get("/v1/billing", headers=acme.owner_headers).json()["session_limit"]["custom"] is False


# -- finding 11: a user id with `/` ------------------------------------------------------------

@pytest.mark.parametrize("user_id", ["a/b", "/", "x/", "/y"])
def test_finding_11_a_user_id_with_a_slash_is_refused(client, billing, user_id):
    setup_tenant(client)
    r = client.post("/v1/tenants/acme/users", json={"id": user_id, "email": "a@acme.test", "role": "owner"},
                    headers=OP)
    assert_problem(r, 422, "invalid-request")
    from agentbilling.domain.errors import InvalidInput
    with pytest.raises(InvalidInput):
        billing.create_user("acme", user_id, "a@acme.test", "owner")


# -- finding 12: roles validated, body size limit ----------------------------------------------

def test_finding_12_an_unknown_role_is_422_on_create_and_on_change(client):
    setup_tenant(client)
    r = client.post("/v1/tenants/acme/users", json={"id": "u2", "email": "a@acme.test", "role": "superhero"},
                    headers=OP)
    assert_problem(r, 422)
    assert client.get("/v1/tenants/acme/users/u2", headers=OP).status_code == 404
    assert_problem(client.patch("/v1/tenants/acme/users/u-owner", json={"role": "superhero"}, headers=OP), 422)
    assert client.get("/v1/tenants/acme/users/u-owner", headers=OP).json()["role"] == "owner"
    add_user(client, "acme", "m", "member")  # the configured non-billing roles still work


def test_finding_12_a_body_over_the_limit_is_413_before_the_key_is_checked(client):
    big = b'{"id": "' + b"x" * (1024 * 1024) + b'"}'
    for path in ["/v1/tenants", "/v1/sessions", "/v1/billing/checkout", "/billing/session-limit"]:
        r = client.post(path, content=big, headers={"Content-Type": "application/json",
                                                     "Authorization": "Bearer nobody"})
        assert_problem(r, 413, "request-too-large")


def test_finding_12_a_chunked_body_over_the_limit_is_413(client):
    def chunks():
        for _ in range(20):
            yield b"x" * 65536

    r = client.post("/v1/tenants", content=chunks(), headers={"Content-Type": "application/json", **OP})
    assert_problem(r, 413, "request-too-large")


def test_finding_12_a_body_under_the_limit_still_works(client):
    acme = setup_tenant(client)
    assert open_session(client, acme, "s-1").status_code == 201


def test_finding_1_a_value_the_database_cannot_hold_is_422_not_500(app, client, billing, monkeypatch):
    """Should a value get past validation, the database's refusal is the caller's fault: a 422."""
    from sqlalchemy.exc import DataError

    def refuses(*args, **kwargs):
        raise DataError("INSERT ...", {}, ValueError("PostgreSQL text fields cannot contain NUL (0x00) bytes"))

    monkeypatch.setattr(billing, "create_tenant", refuses)
    r = client.post("/v1/tenants", json={"id": "t3", "name": "T", "billing_email": "b@t.test"}, headers=OP)
    assert_problem(r, 422, "invalid-request")
