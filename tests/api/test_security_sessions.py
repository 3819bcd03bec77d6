"""Issue 14, sessions: the Billing tab's cookie is a server-side session that sign-out, deleting the
user and changing their role end at once (finding 3); login links are single-use, short-lived
codes, and another user's link never replaces a session silently (finding 4)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, update

from agentbilling.api.deps import SESSION_COOKIE
from agentbilling.storage.tables import login_codes, web_sessions
from tests.support.http import add_user, assert_page, assert_problem
from tests.support.service import operator_headers
from tests.support.tenants import setup_tenant

OP = operator_headers()


def issue(client, tenant_id: str = "acme", user_id: str = "u-owner") -> dict:
    r = client.post(f"/v1/tenants/{tenant_id}/users/{user_id}/tokens", headers=OP)
    assert r.status_code == 201, r.text
    return r.json()


def open_link(client, url: str):
    link = urlsplit(url)
    return client.get(f"{link.path}?{link.query}", follow_redirects=False)


def sign_in(client, tenant_id: str = "acme", user_id: str = "u-owner") -> str:
    r = open_link(client, issue(client, tenant_id, user_id)["login_url"])
    assert r.status_code == 303 and r.headers["location"] == "/billing", r.text
    return client.cookies[SESSION_COOKIE]


def csrf_of(client) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', client.get("/billing").text)
    assert found
    return found.group(1)


def signed_in_works(client, session_id: str) -> bool:
    """Whether this cookie value (and only it) opens the tab and the API; it stays the client's cookie."""
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, session_id)
    page, api = client.get("/billing").status_code, client.get("/v1/billing").status_code
    assert page == api, (page, api)
    return page == 200


# -- finding 3 ---------------------------------------------------------------------------------

def test_finding_3_sign_out_ends_the_session_for_the_tab_and_the_api(client):
    setup_tenant(client)
    session_id = sign_in(client)
    assert signed_in_works(client, session_id)
    r = client.post("/billing/logout", data={"csrf": csrf_of(client)})
    assert r.status_code == 200 and "Signed out" in r.text
    assert not signed_in_works(client, session_id)  # the same cookie value, replayed
    assert_problem(client.get("/v1/billing"), 401)


@pytest.mark.parametrize("change", ["delete", "demote"])
def test_finding_3_deleting_the_user_or_changing_their_role_ends_their_sessions_at_once(client, change):
    setup_tenant(client)
    add_user(client, "acme", "u-admin", "admin")
    first, second = sign_in(client, user_id="u-admin"), None
    client.cookies.clear()
    second = sign_in(client, user_id="u-admin")
    assert signed_in_works(client, first) and signed_in_works(client, second)
    if change == "delete":
        assert client.delete("/v1/tenants/acme/users/u-admin", headers=OP).status_code == 204
    else:
        assert client.patch("/v1/tenants/acme/users/u-admin", json={"role": "owner"}, headers=OP).status_code == 200
    assert not signed_in_works(client, first) and not signed_in_works(client, second)


def test_finding_3_an_email_change_keeps_the_session(client):
    setup_tenant(client)
    session_id = sign_in(client)
    client.patch("/v1/tenants/acme/users/u-owner", json={"email": "new@acme.test"}, headers=OP)
    assert signed_in_works(client, session_id)


def test_finding_3_the_api_token_and_the_cookie_session_are_different_credentials(client):
    setup_tenant(client)
    body = issue(client)
    session_id = sign_in(client)
    client.cookies.clear()
    assert_problem(client.get("/v1/billing", headers={"Authorization": f"Bearer {session_id}"}), 401)
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, body["token"])
    assert_page(client.get("/billing"), 401)
    assert_problem(client.get("/v1/billing"), 401)
    client.cookies.clear()
    assert client.get("/v1/billing", headers={"Authorization": f"Bearer {body['token']}"}).status_code == 200


def test_finding_3_only_a_hash_of_the_session_id_is_stored_and_it_expires(client, billing):
    setup_tenant(client)
    session_id = sign_in(client)
    with billing.db.read() as conn:
        rows = conn.execute(select(web_sessions)).all()
    assert len(rows) == 1 and session_id not in {rows[0].id_hash} and session_id.split(".")[1] not in rows[0].id_hash
    assert rows[0].user_id == "u-owner" and rows[0].revoked_at is None
    with billing.db.write() as conn:
        conn.execute(update(web_sessions).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert not signed_in_works(client, session_id)


# -- finding 4 ---------------------------------------------------------------------------------

def test_finding_4_a_login_link_opens_the_tab_once(client):
    setup_tenant(client)
    url = issue(client)["login_url"]
    assert open_link(client, url).status_code == 303
    for _ in range(4):
        client.cookies.clear()
        r = open_link(client, url)
        assert_page(r, 401, "was already used")
        assert "set-cookie" not in r.headers


def test_finding_4_a_login_link_expires_after_its_short_lifetime(client, billing):
    setup_tenant(client)
    body = issue(client)
    expires = datetime.fromisoformat(body["login_url_expires_at"].replace("Z", "+00:00"))
    assert expires - datetime.now(UTC) <= timedelta(seconds=billing.settings.login_link_seconds)
    assert billing.settings.login_link_seconds == 15 * 60
    with billing.db.write() as conn:
        conn.execute(update(login_codes).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert_page(open_link(client, body["login_url"]), 401, "has expired")
    with billing.db.read() as conn:
        assert all(h not in body["login_url"] for h in conn.execute(select(login_codes.c.code_hash)).scalars())


def test_finding_4_another_tenants_link_while_signed_in_asks_before_switching(client):
    setup_tenant(client, "acme")
    setup_tenant(client, "beta")
    acme_session = sign_in(client, "acme")
    r = open_link(client, issue(client, "beta")["login_url"])
    assert r.status_code == 200 and "Switch account?" in r.text and "owner@beta.test" in r.text
    assert r.headers["referrer-policy"] == "no-referrer" and "no-store" in r.headers["cache-control"]
    assert "set-cookie" not in r.headers
    assert client.cookies[SESSION_COOKIE] == acme_session
    assert client.get("/v1/billing").status_code == 200
    fields = dict(re.findall(r'name="(code|csrf)" value="([^"]+)"', r.text))
    # A forged post (no CSRF token of the current session) switches nothing.
    assert_page(client.post("/billing/login", data={"code": fields["code"]}, follow_redirects=False), 403)
    assert client.cookies[SESSION_COOKIE] == acme_session
    # The button switches: the new session is beta's, the old one has ended.
    r = client.post("/billing/login", data=fields, follow_redirects=False)
    assert r.status_code == 303
    beta_session = client.cookies[SESSION_COOKIE]
    assert beta_session != acme_session
    assert "owner@beta.test" in client.get("/billing").text
    assert not signed_in_works(client, acme_session)


def test_finding_4_ones_own_new_link_while_signed_in_just_signs_in_again(client):
    setup_tenant(client)
    old = sign_in(client)
    new = sign_in(client)
    assert new != old and signed_in_works(client, new) and not signed_in_works(client, old)


def test_finding_3_spent_codes_and_ended_sessions_are_purged_a_day_later(client, billing):
    setup_tenant(client)
    session_id = sign_in(client)
    live = sign_in(client)  # ends the first one
    assert not signed_in_works(client, session_id) and signed_in_works(client, live)
    assert billing.web_sessions.purge() == 0  # nothing a day old yet
    day_ago = datetime.now(UTC) - timedelta(days=1, seconds=1)
    with billing.db.write() as conn:
        conn.execute(update(login_codes).values(expires_at=day_ago))
        conn.execute(update(web_sessions).where(web_sessions.c.revoked_at.is_not(None)).values(revoked_at=day_ago))
    assert billing.web_sessions.purge() >= 3  # every code, and the ended session
    with billing.db.read() as conn:
        assert conn.execute(select(web_sessions.c.user_id)).all() == [("u-owner",)]
    assert signed_in_works(client, live)
