"""The Billing tab without JavaScript, by keyboard, at a phone's width and in another language."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, expect

from tests.support.browser import card, pay_in_the_portal, plan_card
from tests.support.service import operator_headers
from tests.support.tenants import open_session


def test_without_javascript_every_dialog_is_a_page_and_the_change_still_goes_through(site, browser: Browser, shot):
    site.tenant()
    ctx = browser.new_context(java_script_enabled=False, locale="en-US")
    try:
        page = ctx.new_page()
        page.goto(site.login_url())
        pay_in_the_portal(page, "Starter").close()
        page.reload()
        plan_card(page, "Growth").get_by_role("link", name="Subscribe").click()
        expect(page).to_have_url(re.compile(r"/billing/plans/growth/change$"))
        expect(page.get_by_role("heading", name="Apply subscription updates")).to_be_visible()
        page.get_by_text("End of the current period").click()
        shot(page, "no-js-apply-subscription-updates")
        page.get_by_role("button", name="Update subscription").click()
        expect(page).to_have_url(re.compile(r"/billing\?done=plan-change"))
        expect(card(page, "Upcoming subscription")).to_contain_text("Feb 28, 2026")

        card(page, "Upcoming subscription").get_by_role("link", name="Cancel").click()
        expect(page.get_by_role("heading", name="Cancel scheduled plan")).to_be_visible()
        page.get_by_role("button", name="Cancel scheduled plan").click()
        expect(card(page, "Upcoming subscription")).to_have_count(0)

        plan_card(page, "Enterprise").get_by_role("link", name="Book a demo").click()
        page.get_by_role("button", name="Send request").click()
        expect(plan_card(page, "Enterprise").get_by_role("status")).to_have_text("Request received")
    finally:
        ctx.close()


def test_the_dialogs_work_from_the_keyboard(site, page, shot):
    site.tenant()
    page.goto(site.login_url())
    pay_in_the_portal(page, "Starter").close()
    page.reload()
    subscribe = plan_card(page, "Growth").get_by_role("link", name="Subscribe")
    subscribe.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Apply subscription updates")
    expect(dialog).to_be_visible()
    # Focus is inside the dialog, and Tab keeps it there.
    assert page.evaluate("document.activeElement.closest('dialog') !== null")
    for _ in range(12):
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.closest('dialog') !== null"
                             " || document.activeElement === document.body")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.evaluate("document.activeElement.textContent.trim()") == "Subscribe"  # focus came back

    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Immediately").focus()
    page.keyboard.press("ArrowDown")  # End of the current period
    page.keyboard.press("ArrowDown")  # On custom date: the date becomes required
    expect(dialog.get_by_label("Date", exact=True)).to_be_enabled()
    dialog.get_by_label("Date", exact=True).fill("2026-02-20")
    dialog.get_by_role("button", name="Update subscription").focus()
    page.keyboard.press("Enter")
    expect(card(page, "Upcoming subscription")).to_contain_text("Feb 20, 2026")


def test_at_a_phones_width_nothing_overflows_and_the_forms_are_usable(site, browser: Browser, shot):
    acme = site.tenant()
    site.api.put("/v1/tenants/acme/subscription", json={"plan_id": "starter"}, headers=operator_headers())
    for i in range(3):
        assert open_session(site.api, acme, f"phone-{i}").status_code == 201
    ctx = browser.new_context(viewport={"width": 360, "height": 780}, is_mobile=True, has_touch=True, locale="en-US")
    try:
        page = ctx.new_page()
        page.goto(site.login_url())
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], widths  # no sideways scrolling of the page
        shot(page, "phone")
        limit = page.locator("#session-limit")
        limit.get_by_label("Session limit").fill("300")
        limit.get_by_role("button", name="Set limit").tap()
        expect(limit).to_contain_text("300")
        plan_card(page, "Enterprise").get_by_role("link", name="Book a demo").tap()
        dialog = page.get_by_role("dialog", name="Book a demo")
        expect(dialog).to_be_visible()
        box = dialog.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
        shot(page, "phone-dialog")
    finally:
        ctx.close()


def test_dates_and_money_in_the_readers_language(site, browser: Browser, shot):
    site.tenant()
    site.api.put("/v1/tenants/acme/subscription", json={"plan_id": "starter"}, headers=operator_headers())
    ctx = browser.new_context(locale="de-DE")
    try:
        page = ctx.new_page()
        page.goto(site.login_url())
        expect(card(page, "Active subscription")).to_contain_text("28.02.2026")
        expect(plan_card(page, "Growth")).to_contain_text("199,00\xa0$")
        shot(page, "german")
    finally:
        ctx.close()
