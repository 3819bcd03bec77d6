"""The Billing tab over HTTP: the page behind a login link, its forms' CSRF tokens, roles, billing off,
refused forms, the reader's locale and the session list's pages (the browser tests click the same)."""

import re
from urllib.parse import urlsplit

import pytest

from tests.support.http import add_user, assert_page, assert_problem, view
from tests.support.pages import login, tab_csrf
from tests.support.service import operator_headers
from tests.support.tenants import open_session, setup_tenant


def _switch(client, tenant_id: str = "acme", user_id: str = "u-owner") -> None:
    """Open another user's login link while signed in: a page asks first, its button switches."""
    link = urlsplit(client.post(f"/v1/tenants/{tenant_id}/users/{user_id}/tokens",
                                headers=operator_headers()).json()["login_url"])
    r = client.get(f"{link.path}?{link.query}", follow_redirects=False)
    assert r.status_code == 200 and "Switch account?" in r.text
    fields = dict(re.findall(r'name="(code|csrf)" value="([^"]+)"', r.text))
    r = client.post("/billing/login", data=fields, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/billing"


def test_the_trial_card_plans_and_sessions_render_with_the_help_pages_labels(client):
    acme = setup_tenant(client)
    assert open_session(client, acme, "conv-1").status_code == 201
    login(client)
    page = client.get("/billing")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for label in ("Trial subscription", "Sessions count", "Trial sessions left", "Trial days left", "Plans",
                  "$49.00", "$199.00", "Book a demo", "Answered only", "conv-1"):
        assert label in page.text, label
    assert "Session limit" not in page.text  # no Session limit card on the trial (R9)


def test_a_paid_plan_shows_the_session_limit_card_and_no_trial_counters(client):
    setup_tenant(client)
    client.put("/v1/tenants/acme/subscription", json={"plan_id": "starter"}, headers=operator_headers())
    login(client)
    page = client.get("/billing").text
    assert "Active subscription" in page and "Next billing date" in page and "Session limit" in page
    assert "Trial sessions left" not in page


# -- the forms: CSRF, roles, billing off, refusals (over HTTP; the browser tests click them) ----------

FORMS = [  # every form of the tab, with fields that would be accepted
    ("/billing/checkout", {"plan_id": "starter"}),
    ("/billing/manage", {}),
    ("/billing/plan-change", {"plan_id": "growth", "when": "immediately"}),
    ("/billing/scheduled-plan/cancel", {}),
    ("/billing/session-limit", {"limit": "10"}),
    ("/billing/session-limit/reset", {}),
    ("/billing/demo-requests", {"plan_id": "enterprise", "message": "hi"}),
    ("/billing/logout", {}),
]
PAGES = ["/billing", "/billing/plans/growth/change", "/billing/scheduled-plan/cancel", "/billing/plans/enterprise/demo"]


def _state(client, acme) -> tuple:
    v = view(client, acme)
    demos = client.get("/v1/demo-requests", headers=operator_headers()).json()["data"]
    return v["cards"], v["session_limit"], len(demos)


@pytest.mark.parametrize("path, fields", FORMS)
def test_a_form_without_the_right_csrf_token_is_a_403_that_changes_nothing(client, path, fields):
    acme = setup_tenant(client)
    client.put("/v1/tenants/acme/subscription", json={"plan_id": "starter"}, headers=operator_headers())
    login(client)
    before = _state(client, acme)
    for token in (None, "0" * 64):
        data = dict(fields) if token is None else {**fields, "csrf": token}
        r = client.post(path, data=data, follow_redirects=False)
        assert_page(r, 403, "security token")
    assert _state(client, acme) == before
    assert client.get("/billing").status_code == 200  # still signed in


def test_a_csrf_token_is_bound_to_its_session(client):
    setup_tenant(client)
    client.put("/v1/tenants/acme/subscription", json={"plan_id": "starter"}, headers=operator_headers())
    login(client)
    old = tab_csrf(client)
    add_user(client, "acme", "u-admin", "admin")
    _switch(client, user_id="u-admin")  # another session: another CSRF token
    r = client.post("/billing/session-limit", data={"limit": "10", "csrf": old}, follow_redirects=False)
    assert_page(r, 403)
    r = client.post("/billing/session-limit", data={"limit": "10", "csrf": tab_csrf(client)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/billing?done=limit-set#session-limit"


def test_the_json_api_through_the_cookie_needs_the_csrf_header_for_changes(client):
    acme = setup_tenant(client)
    client.put("/v1/tenants/acme/subscription", json={"plan_id": "starter"}, headers=operator_headers())
    login(client)
    assert client.get("/v1/billing").status_code == 200  # reading needs no token
    assert_problem(client.put("/v1/billing/session-limit", json={"limit": 10}), 403, "csrf-token-invalid")
    assert view(client, acme)["session_limit"]["limit"] == 1000
    r = client.put("/v1/billing/session-limit", json={"limit": 10}, headers={"X-CSRF-Token": tab_csrf(client)})
    assert r.status_code == 200 and r.json()["session_limit"]["limit"] == 10


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_without_billing_rights_no_page_or_form_of_the_tab_exists(client, billing, role):
    setup_tenant(client)
    client.put("/v1/tenants/acme/subscription", json={"plan_id": "starter"}, headers=operator_headers())
    login(client)
    csrf = tab_csrf(client)
    client.patch("/v1/tenants/acme/users/u-owner", json={"role": role}, headers=operator_headers())
    # The role change ended the session at once; a new login link of theirs opens nothing either.
    for path in PAGES:
        assert_page(client.get(path), 401)
    for path, fields in FORMS:
        assert_page(client.post(path, data={**fields, "csrf": csrf}, follow_redirects=False), 401)
    link = urlsplit(client.post("/v1/tenants/acme/users/u-owner/tokens", headers=operator_headers())
                    .json()["login_url"])
    assert_page(client.get(f"{link.path}?{link.query}", follow_redirects=False), 404, "Not found")


def test_with_billing_off_the_tab_says_so_and_its_forms_do_nothing(client, billing):
    setup_tenant(client)
    login(client)
    csrf = tab_csrf(client)
    billing.settings.billing_enabled = False
    page = client.get("/billing")
    assert page.status_code == 200 and "Billing is handled outside the portal — ask your administrator." in page.text
    assert "Plans" not in page.text
    r = client.post("/billing/demo-requests", data={"plan_id": "enterprise", "csrf": csrf}, follow_redirects=False)
    assert_page(r, 404, "handled outside the portal")
    billing.settings.billing_enabled = True
    assert client.get("/v1/demo-requests", headers=operator_headers()).json()["data"] == []


def test_no_page_without_a_session(client):
    setup_tenant(client)
    for path in PAGES:
        assert_page(client.get(path), 401, "login link")
    assert_page(client.post("/billing/session-limit", data={"limit": "5"}), 401)


@pytest.mark.parametrize("limit, message", [
    ("0", "The session limit must be greater than zero."),
    ("-3", "The session limit must be a whole number."),
    ("ten", "The session limit must be a whole number."),
    ("5001", "The session limit cannot be above 5,000, the highest limit of the Starter plan."),
])
def test_a_refused_limit_shows_the_tab_again_with_why(client, limit, message):
    acme = setup_tenant(client)
    client.put("/v1/tenants/acme/subscription", json={"plan_id": "starter"}, headers=operator_headers())
    login(client)
    r = client.post("/billing/session-limit", data={"limit": limit, "csrf": tab_csrf(client)})
    assert r.status_code == 422, r.status_code
    assert message in r.text and 'aria-invalid="true"' in r.text and f'value="{limit}"' in r.text
    assert view(client, acme)["session_limit"]["limit"] == 1000


def test_a_refused_plan_change_shows_its_form_again_with_why(client):
    acme = setup_tenant(client)
    client.put("/v1/tenants/acme/subscription", json={"plan_id": "starter"}, headers=operator_headers())
    login(client)
    r = client.post("/billing/plan-change", data={"plan_id": "growth", "when": "custom_date", "date": "2025-01-01",
                                                  "csrf": tab_csrf(client)})
    assert r.status_code == 409 and "Apply subscription updates" in r.text and 'value="2025-01-01"' in r.text
    assert [c["badge"] for c in view(client, acme)["cards"]] == ["Active subscription"]


def test_dates_and_money_follow_the_readers_language(client):
    setup_tenant(client)
    client.put("/v1/tenants/acme/subscription", json={"plan_id": "starter"}, headers=operator_headers())
    login(client)
    german = client.get("/billing", headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}).text
    assert '<html lang="de">' in german
    assert "49,00\xa0$" in german and "28.02.2026" in german  # Next billing date, medium date in German
    english = client.get("/billing", headers={"Accept-Language": "en-US"}).text
    assert "$49.00" in english and "Feb 28, 2026" in english


def test_the_session_list_pages_to_older_sessions(client):
    acme = setup_tenant(client)
    for i in range(25):
        assert open_session(client, acme, f"c{i:02d}").status_code == 201
    login(client)
    first = client.get("/billing").text
    assert first.count("data-session=") == 20 and 'data-session="c24"' in first
    older = re.search(r'href="(/billing\?cursor=[^"#]+)#sessions">Older sessions', first)
    assert older
    rest = client.get(older.group(1).replace("&amp;", "&")).text
    assert rest.count("data-session=") == 5 and 'data-session="c00"' in rest and "Older sessions" not in rest
