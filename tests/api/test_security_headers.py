"""Issue 14, finding 6: security headers on every page and answer; /docs served offline."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from agentbilling.api.app import create_app
from agentbilling.client import connect
from agentbilling.settings import Settings
from tests.support.http import add_user
from tests.support.pages import checkout_path, login, subscribed
from tests.support.service import operator_headers
from tests.support.tenants import setup_tenant

OP = operator_headers()


def assert_strict(r, frame_ancestors: str = "'none'") -> None:
    csp = r.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert directives["frame-ancestors"] == frame_ancestors
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


def assert_no_inline(html: str) -> None:
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "an inline script"
    assert "<style" not in html and " style=" not in html, "inline style"
    assert not re.search(r"\son[a-z]+=", html), "an inline event handler"


def test_finding_6_every_page_of_the_tab_and_portal_has_the_headers_and_no_inline_code(client):
    acme = setup_tenant(client)
    checkout = checkout_path(client, acme)
    portal = subscribed(client, acme)
    pages = [portal, checkout]
    login(client)
    pages += ["/billing", "/billing/plans/growth/change", "/billing/scheduled-plan/cancel",
              "/billing/plans/enterprise/demo", "/docs"]
    for path in pages:
        r = client.get(path)
        assert r.status_code == 200, (path, r.text)
        assert_strict(r)
        assert_no_inline(r.text)
        assert r.headers["cache-control"] == "no-store", path  # CSRF tokens, or secrets in the URL


def test_finding_6_refusals_and_json_answers_carrying_secrets_are_no_store(client):
    setup_tenant(client)
    answers = [
        client.post("/v1/tenants/acme/api-keys", headers=OP),
        client.post("/v1/tenants/acme/users/u-owner/tokens", headers=OP),
        client.post("/v1/webhook-endpoints", json={"url": "https://example.com/hook"}, headers=OP),
        client.get("/billing"),  # a 401 page
        client.get("/v1/billing"),  # a 401 problem
        client.get("/sandbox/portal/nope"),
    ]
    for r in answers:
        assert r.headers["cache-control"] == "no-store", r.request.url
        assert_strict(r)


def test_finding_6_login_link_pages_send_no_referrer(client):
    setup_tenant(client)
    add_user(client, "acme", "u-admin", "admin")
    url = client.post("/v1/tenants/acme/users/u-owner/tokens", headers=OP).json()["login_url"]
    r = client.get(url, follow_redirects=False)
    assert r.status_code == 303 and r.headers["referrer-policy"] == "no-referrer"
    assert client.get(url, follow_redirects=False).headers["referrer-policy"] == "no-referrer"  # the 401 too


def test_finding_6_static_assets_may_be_cached(client):
    r = client.get("/billing/static/billing.css")
    assert r.status_code == 200 and r.headers.get("cache-control") != "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_finding_6_docs_work_offline_from_the_package(client):
    page = client.get("/docs").text
    for asset in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert asset.startswith("/"), asset  # nothing from another host
        assert client.get(asset).status_code == 200, asset
    assert "swagger-ui-bundle.js" in page


@pytest.fixture
def embedded_https(settings, clock) -> Iterator[TestClient]:
    custom = Settings(**{**settings.model_dump(), "public_url": "https://billing.example.com",
                         "frame_ancestors": "https://platform.example.com"})
    service = connect(custom, clock=clock, upgrade=False)
    try:
        with TestClient(create_app(service)) as c:
            yield c
    finally:
        service.close()


def test_finding_6_frame_ancestors_comes_from_the_setting_and_hsts_from_an_https_public_url(embedded_https, client):
    r = embedded_https.get("/billing")
    assert_strict(r, "https://platform.example.com")
    assert "x-frame-options" not in r.headers
    assert r.headers["strict-transport-security"].startswith("max-age=")
    plain = client.get("/billing")
    assert "strict-transport-security" not in plain.headers and plain.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("bad", ["'self'; script-src *", "a,b", "x\ny", ""])
def test_finding_6_a_frame_ancestors_setting_cannot_add_a_directive(bad):
    with pytest.raises(ValueError):
        Settings(frame_ancestors=bad)
