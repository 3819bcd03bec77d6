"""The Billing tab in a real browser: Debian's Chromium, headless, driven by Playwright, against the
service served by uvicorn on a free port, on the test clock.

Chromium comes from the system (`chromium`, or AGENTBILLING_TEST_CHROMIUM): Playwright's own
browser downloads do not work here. A missing browser fails these tests; it never skips them.
Each test saves screenshots of the states it reaches under test-artifacts/screenshots/.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from agentbilling.api.app import create_app
from agentbilling.client import Billing
from tests.support.service import LiveServer, operator_headers
from tests.support.tenants import TenantAccess, setup_tenant

ARTIFACTS = Path(os.environ.get("AGENTBILLING_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))
# The flags a headless Chromium needs on a machine with no network beyond the local one.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def chromium_path() -> str:
    found = os.environ.get("AGENTBILLING_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    if not found:
        pytest.fail("No Chromium: install Debian's `chromium` package (./dev.sh test does) or set "
                    "AGENTBILLING_TEST_CHROMIUM to a Chromium executable.")
    return found


# Per module, not per session: Playwright's sync API holds an event loop on this thread while it
# runs, and the tests after these ones call asyncio.run().
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
    yield b
    b.close()


@dataclass
class Site:
    """The service as a browser and the platform see it."""

    url: str
    api: httpx.Client  # the platform's side: operator and agent-runtime calls
    billing: Billing

    def tenant(self, tenant_id: str = "acme", role: str = "owner") -> TenantAccess:
        return setup_tenant(self.api, tenant_id, role)

    def login_url(self, tenant_id: str = "acme", user_id: str = "u-owner") -> str:
        r = self.api.post(f"/v1/tenants/{tenant_id}/users/{user_id}/tokens", headers=operator_headers())
        assert r.status_code == 201, r.text
        return r.json()["login_url"]

    def advance(self, **body: object) -> None:
        r = self.api.post("/v1/clock/advance", json=body, headers=operator_headers())
        assert r.status_code == 200, r.text


@pytest.fixture
def site(billing: Billing) -> Iterator[Site]:
    with LiveServer(create_app(billing)) as server, httpx.Client(base_url=server.url, timeout=30) as api:
        yield Site(server.url, api, billing)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def shot(request: pytest.FixtureRequest):
    """shot(page, "state"): a full-page screenshot, kept as a test artifact."""
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    test = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)

    def take(p: Page, state: str) -> Path:
        path = folder / f"{test}--{state}.png"
        p.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0
        return path

    return take
