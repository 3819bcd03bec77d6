"""Issue 14, finding 6, in a real browser: under the strict CSP the tab's script, the portal's Print
button and /docs (Swagger UI from the package, offline) all work, and the browser reports no
violation."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.support.browser import pay_in_the_portal


def _violations(page: Page) -> list[str]:
    found: list[str] = []
    page.on("console", lambda msg: found.append(msg.text) if "Content Security Policy" in msg.text else None)
    return found


def test_finding_6_the_tab_the_portal_and_docs_run_under_the_csp_without_violations(site, page: Page):
    site.tenant()
    violations = _violations(page)
    page.goto(site.login_url())
    portal = pay_in_the_portal(page, "Starter")
    portal_violations = _violations(portal)
    page.reload()
    page.get_by_role("link", name="Subscribe").first.click()  # the dialog needs billing.js
    expect(page.locator("dialog[open]")).to_be_visible()
    page.goto(f"{site.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("agentbilling")
    expect(page.locator(".opblock").first).to_be_visible()
    assert violations == [] and portal_violations == [], violations + portal_violations
