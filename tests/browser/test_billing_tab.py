"""The help page's stories, clicked through the Billing tab in Chromium."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.support.browser import CARD_CHARGES_FAIL, CARD_OK, card, pay_in_the_portal, plan_card
from tests.support.service import operator_headers
from tests.support.tenants import open_session


def test_trial_card_then_subscribe_and_pay_in_the_portal_gives_an_active_subscription(site, page, shot):
    acme = site.tenant()
    assert open_session(site.api, acme, "conv-1").status_code == 201
    page.goto(site.login_url())
    expect(page).to_have_url(re.compile(r"/billing$"))
    trial = card(page, "Trial subscription")
    expect(trial).to_be_visible()
    expect(trial).to_contain_text("Trial sessions left")
    expect(trial).to_contain_text("49")
    expect(trial).to_contain_text("Trial days left")
    expect(trial.get_by_text("14", exact=True)).to_be_visible()
    expect(page.locator("#session-limit")).to_have_count(0)  # no Session limit card on the trial (R9)
    expect(plan_card(page, "Starter")).to_contain_text("$49.00")
    expect(plan_card(page, "Outreach")).to_contain_text("Answered only")
    expect(plan_card(page, "Enterprise").get_by_role("link", name="Book a demo")).to_be_visible()
    shot(page, "trial")

    portal = pay_in_the_portal(page, "Starter")
    expect(card(portal, "Active subscription")).to_be_visible()  # the portal returns to the tab
    page.reload()
    active = card(page, "Active subscription")
    expect(active).to_contain_text("Starter")
    expect(active).to_contain_text("Next billing date")
    expect(active).to_contain_text("Feb 28, 2026")
    expect(active.get_by_role("button", name="Manage")).to_be_visible()
    expect(page.locator("#session-limit")).to_be_visible()
    expect(plan_card(page, "Starter").get_by_role("button", name="Current plan")).to_be_disabled()
    shot(page, "active")


def test_a_change_on_a_custom_date_shows_upcoming_and_cancel_scheduled_plan_undoes_it(site, page, shot):
    site.tenant()
    page.goto(site.login_url())
    pay_in_the_portal(page, "Starter").close()
    page.reload()

    plan_card(page, "Growth").get_by_role("link", name="Subscribe").click()
    dialog = page.get_by_role("dialog", name="Apply subscription updates")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Date", exact=True)).to_be_disabled()  # until On custom date is chosen
    dialog.get_by_text("On custom date").click()
    dialog.get_by_label("Date", exact=True).fill("2026-02-15")
    shot(page, "apply-subscription-updates")
    dialog.get_by_role("button", name="Update subscription").click()

    expect(page.get_by_role("status").filter(has_text="Subscription updated.")).to_be_visible()
    upcoming = card(page, "Upcoming subscription")
    expect(upcoming).to_contain_text("Growth")
    expect(upcoming).to_contain_text("Starts on")
    expect(upcoming).to_contain_text("Feb 15, 2026")
    expect(card(page, "Active subscription")).to_contain_text("Starter")
    shot(page, "upcoming")

    upcoming.get_by_role("link", name="Cancel").click()
    confirm = page.get_by_role("dialog", name="Cancel scheduled plan")
    expect(confirm).to_contain_text("Growth")
    shot(page, "cancel-scheduled-plan")
    confirm.get_by_role("button", name="Cancel scheduled plan").click()
    expect(page.get_by_role("status").filter(has_text="Scheduled plan canceled.")).to_be_visible()
    expect(card(page, "Upcoming subscription")).to_have_count(0)
    shot(page, "scheduled-plan-canceled")


def test_a_limit_warns_as_sessions_come_in_stops_them_and_reset_limit_restores_the_base(site, page, shot):
    acme = site.tenant()
    site.api.put("/v1/tenants/acme/subscription", json={"plan_id": "starter"}, headers=operator_headers())
    page.goto(site.login_url())
    limit_card = page.locator("#session-limit")
    limit_card.get_by_label("Session limit").fill("10")
    limit_card.get_by_role("button", name="Set limit").click()
    expect(page.get_by_role("status").filter(has_text="Session limit saved.")).to_be_visible()
    expect(limit_card).to_contain_text("10")

    for i in range(8):
        assert open_session(site.api, acme, f"s{i}").status_code == 201
    page.reload()
    expect(limit_card.get_by_text("Session limit almost reached")).to_be_visible()
    shot(page, "almost-reached")

    for i in range(8, 10):
        assert open_session(site.api, acme, f"s{i}").status_code == 201
    assert open_session(site.api, acme, "one-too-many").status_code == 402
    page.reload()
    expect(limit_card.get_by_text("Session limit has been reached")).to_be_visible()
    expect(page.get_by_role("alert").filter(has_text="Session limit has been reached")).to_be_visible()
    site.advance(seconds=60)  # a worker pass records the warnings (R14)
    page.reload()
    items = page.locator("section[aria-labelledby=notices] li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_contain_text("Session limit has been reached")  # newest first
    expect(items.nth(1)).to_contain_text("Session limit almost reached")
    shot(page, "reached")

    limit_card.get_by_role("button", name="Reset limit").click()
    expect(page.get_by_role("status").filter(has_text="Session limit reset to the plan's base limit.")).to_be_visible()
    expect(limit_card).to_contain_text("1,000")
    expect(limit_card.get_by_text("Session limit has been reached")).to_have_count(0)
    assert open_session(site.api, acme, "one-too-many").status_code == 201
    shot(page, "reset")


def test_a_refused_limit_says_why_and_changes_nothing(site, page):
    site.tenant()
    site.api.put("/v1/tenants/acme/subscription", json={"plan_id": "starter"}, headers=operator_headers())
    page.goto(site.login_url())
    limit_card = page.locator("#session-limit")
    limit_card.get_by_label("Session limit").fill("0")
    limit_card.get_by_role("button", name="Set limit").click()
    expect(limit_card.get_by_role("alert")).to_have_text("The session limit must be greater than zero.")
    expect(limit_card.get_by_label("Session limit")).to_have_attribute("aria-invalid", "true")
    token = site.api.post("/v1/tenants/acme/users/u-owner/tokens", headers=operator_headers()).json()["token"]
    r = site.api.get("/v1/billing", headers={"Authorization": f"Bearer {token}"})
    assert r.json()["session_limit"]["limit"] == 1000


def add_payment_method(page: Page, card_number: str) -> None:
    """Manage on the subscription card, then + Add payment method in the portal's new tab."""
    with page.context.expect_page() as opened:
        page.locator("article.card.current").get_by_role("button", name="Manage").click()
    portal = opened.value
    portal.wait_for_load_state()
    expect(portal.get_by_role("heading", name="Payment Method")).to_be_visible()
    portal.get_by_text("+ Add payment method").click()
    portal.get_by_label("Card number").fill(card_number)
    portal.get_by_role("button", name="Add payment method").click()
    expect(portal.get_by_text(f"Card ending in {card_number[-4:]}")).to_be_visible()
    portal.close()


def test_a_failed_renewal_shows_payment_issue_and_the_payment_pending_banner(site, page, shot):
    acme = site.tenant()
    page.goto(site.login_url())
    pay_in_the_portal(page, "Starter").close()
    page.reload()
    add_payment_method(page, CARD_CHARGES_FAIL)
    site.advance(to="2026-02-28T09:00:00Z")  # the renewal is charged to the new card, and fails
    page.reload()
    expect(card(page, "Payment issue")).to_contain_text("Starter")
    banner = page.get_by_role("alert").filter(has_text="Payment pending")
    expect(banner).to_contain_text("March 7, 2026")
    shot(page, "payment-issue")
    assert open_session(site.api, acme, "still-open").status_code == 201  # grace: the gate stays open

    site.advance(to="2026-03-07T09:00:00Z")  # grace is over, still unpaid
    page.reload()
    expect(page.get_by_role("alert").filter(
        has_text="Your payment is overdue and the grace period has expired.")).to_contain_text(
        "Click Manage on the subscription card and settle the failed payment in the billing portal.")
    shot(page, "payment-overdue")
    assert open_session(site.api, acme, "stopped").status_code == 402

    add_payment_method(page, CARD_OK)  # settles the open invoice at once
    page.reload()
    expect(card(page, "Active subscription")).to_contain_text("Starter")
    expect(page.get_by_role("alert")).to_have_count(0)
    assert open_session(site.api, acme, "running-again").status_code == 201
    shot(page, "paid-again")


def test_book_a_demo_sends_the_request_and_says_request_received(site, page, shot):
    site.tenant()
    page.goto(site.login_url())
    plan_card(page, "Enterprise").get_by_role("link", name="Book a demo").click()
    dialog = page.get_by_role("dialog", name="Book a demo")
    dialog.get_by_label("Message").fill("About 40,000 sessions a month.")
    dialog.get_by_role("button", name="Send request").click()
    expect(plan_card(page, "Enterprise").get_by_role("status")).to_have_text("Request received")
    shot(page, "request-received")
    requests = site.api.get("/v1/demo-requests", headers=operator_headers()).json()["data"]
    assert [(r["tenant_id"], r["plan_id"], r["message"]) for r in requests] == [
        ("acme", "enterprise", "About 40,000 sessions a month.")]


def test_a_member_cannot_reach_the_page(site, page, shot):
    site.tenant()
    r = site.api.post("/v1/tenants/acme/users", json={"id": "m", "email": "m@acme.test", "role": "member"},
                      headers=operator_headers())
    assert r.status_code == 201
    response = page.goto(site.login_url(user_id="m"))
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    assert page.context.cookies() == []  # no session was started
    response = page.goto(f"{site.url}/billing")
    assert response is not None and response.status == 401
    shot(page, "member")


def test_billing_turned_off_says_it_is_handled_outside_the_portal(site, page, shot, billing):
    site.tenant()
    login = site.login_url()
    billing.settings.billing_enabled = False
    page.goto(login)
    expect(page.get_by_text("Billing is handled outside the portal — ask your administrator.")).to_be_visible()
    expect(page.locator("article.card")).to_have_count(0)
    shot(page, "billing-off")


def test_a_36_hour_conversation_is_one_session_and_two_billable_sessions(site, page, shot):
    acme = site.tenant()
    assert open_session(site.api, acme, "long-talk").status_code == 201
    site.advance(seconds=36 * 3600)
    r = site.api.post("/v1/sessions/long-talk/messages", json={"from": "customer"}, headers=acme.key_headers)
    assert r.status_code == 200, r.text
    page.goto(site.login_url())
    rows = page.locator("tr[data-session]")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td").last).to_have_text("2")
    expect(card(page, "Trial subscription")).to_contain_text("48")  # Trial sessions left
    bars = page.locator(".chart rect.bar")
    expect(bars.first).to_have_attribute("data-value", "1")
    expect(bars.nth(1)).to_have_attribute("data-value", "1")
    shot(page, "usage")
