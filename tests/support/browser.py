"""Steps and locators of the Billing tab in a browser (Playwright), for the browser tests."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

CARD_OK = "4242424242424242"
CARD_CHARGES_FAIL = "4000000000000341"


def card(page: Page, badge: str):
    return page.locator("article.card").filter(has=page.locator(".badge", has_text=re.compile(f"^{badge}$")))


def plan_card(page: Page, name: str):
    return page.locator("section[aria-labelledby=plans] article.card").filter(
        has=page.get_by_role("heading", name=re.compile(f"^{name}")))


def pay_in_the_portal(page: Page, plan: str, card_number: str = CARD_OK) -> Page:
    """Subscribe on a plan card: the portal opens in a new tab; pay there. Returns the portal's tab."""
    with page.context.expect_page() as opened:
        plan_card(page, plan).get_by_role("button", name="Subscribe").click()
    portal = opened.value
    portal.wait_for_load_state()
    expect(portal.get_by_role("heading", name=f"Subscribe to {plan}")).to_be_visible()
    portal.get_by_label("Card number").fill(card_number)
    portal.get_by_role("button", name="Pay and subscribe").click()
    portal.wait_for_url(re.compile(r"/billing$"))
    return portal
