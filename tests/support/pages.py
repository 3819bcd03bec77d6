"""Steps through the HTML pages over HTTP: a login link opened, the CSRF token a form carries, a
checkout paid in the sandbox's portal."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from tests.support.service import operator_headers
from tests.support.subscribing import CARD_OK, checkout
from tests.support.tenants import TenantAccess


def login(client, tenant_id: str = "acme", user_id: str = "u-owner") -> None:
    """Open the user's login link: the client then holds a Billing tab session."""
    url = client.post(f"/v1/tenants/{tenant_id}/users/{user_id}/tokens", headers=operator_headers()).json()["login_url"]
    link = urlsplit(url)
    assert link.scheme in ("http", "https") and link.path == "/billing/login"  # absolute, as handed out
    r = client.get(f"{link.path}?{link.query}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/billing"


def tab_csrf(client) -> str:
    """The CSRF token the Billing tab's forms carry, for the signed-in client."""
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', client.get("/billing").text)
    assert found, "the tab's forms carry a CSRF token"
    return found.group(1)


def csrf_of(page) -> str:
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def checkout_path(client, access: TenantAccess, plan_id: str = "starter") -> str:
    r = checkout(client, access, plan_id)
    assert r.status_code == 200, r.text
    return urlsplit(r.json()["url"]).path


def portal_path(client, access: TenantAccess) -> str:
    r = client.post("/v1/billing/portal", headers=access.owner_headers)
    assert r.status_code == 200, r.text
    return urlsplit(r.json()["url"]).path


def pay(client, path: str, card_number: str = CARD_OK):
    csrf = csrf_of(client.get(path))
    return client.post(path, data={"card": card_number, "csrf": csrf}, follow_redirects=False)


def assert_back_to(r, path: str) -> None:
    assert r.status_code == 303, r.text
    assert urlsplit(r.headers["location"]).path == path


def subscribed(client, access: TenantAccess, plan_id: str = "starter") -> str:
    """Subscribe through the checkout page; the portal's path."""
    assert_back_to(pay(client, checkout_path(client, access, plan_id)), "/billing")
    return portal_path(client, access)
