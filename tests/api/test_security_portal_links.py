"""Issue 14, finding 5: a portal link names its user and is re-checked on every request: the user
exists (the same one), still has billing rights, and the link has not expired."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from agentbilling.payments.sandbox.provider import SandboxProvider
from tests.support.http import add_user, card
from tests.support.pages import csrf_of, portal_path, subscribed
from tests.support.service import operator_headers
from tests.support.tenants import setup_tenant

OP = operator_headers()


def admin_portal(client) -> tuple[object, str, str]:
    """acme on Starter; the portal link an admin got, and a CSRF token of it from before the change."""
    acme = setup_tenant(client)
    subscribed(client, acme)
    admin = add_user(client, "acme", "u-admin", "admin")
    r = client.post("/v1/billing/portal", headers=admin)
    assert r.status_code == 200, r.text
    portal = urlsplit(r.json()["url"]).path
    return acme, portal, csrf_of(client.get(portal))


@pytest.mark.parametrize("change", [
    pytest.param(lambda c: c.delete("/v1/tenants/acme/users/u-admin", headers=OP), id="deleted"),
    pytest.param(lambda c: c.patch("/v1/tenants/acme/users/u-admin", json={"role": "member"}, headers=OP),
                 id="demoted"),
    pytest.param(lambda c: (c.delete("/v1/tenants/acme/users/u-admin", headers=OP),
                            add_user(c, "acme", "u-admin", "admin")), id="deleted-and-added-again"),
])
def test_finding_5_a_portal_link_dies_with_its_users_billing_rights(client, change):
    acme, portal, csrf = admin_portal(client)
    change(client)
    assert client.get(portal).status_code == 404
    r = client.post(f"{portal}/cancel", data={"csrf": csrf, "confirm": "yes"}, follow_redirects=False)
    assert r.status_code == 404
    assert card(client, acme)["badge"] == "Active subscription"  # nothing canceled
    assert client.get(f"{portal}/invoices/anything").status_code == 404


def test_finding_5_the_link_of_a_user_who_keeps_their_rights_still_works(client):
    acme, portal, csrf = admin_portal(client)
    client.patch("/v1/tenants/acme/users/u-admin", json={"email": "new@acme.test"}, headers=OP)
    r = client.post(f"{portal}/cancel", data={"csrf": csrf, "confirm": "yes"}, follow_redirects=False)
    assert r.status_code == 303
    assert card(client, acme)["badge"] == "Canceled subscription"


def test_finding_5_an_expired_portal_link_opens_nothing(client, monkeypatch):
    acme, portal, _ = admin_portal(client)
    monkeypatch.setattr("agentbilling.payments.sandbox.provider.PORTAL_LINK_SECONDS", -1)
    assert client.get(portal).status_code == 404


def test_finding_5_a_link_that_names_no_user_opens_nothing(client, billing):
    acme = setup_tenant(client)
    assert billing.sandbox is not None
    url = SandboxProvider.portal_url(billing.sandbox, "acme", "http://testserver")
    assert client.get(url.removeprefix("http://testserver")).status_code == 404
    assert client.get(portal_path(client, acme)).status_code == 200
