"""The sandbox's secure billing portal as a person uses it: the checkout page, the portal's Payment
Method, Invoices and Cancel subscription, and the printable invoice, through form posts that carry
the CSRF token scraped from the page."""

from __future__ import annotations

import pytest

from tests.support.http import card
from tests.support.pages import assert_back_to, checkout_path, csrf_of, pay, portal_path, subscribed
from tests.support.subscribing import CARD_CHARGES_FAIL, CARD_DECLINED, CARD_OK, invoices
from tests.support.tenants import TenantAccess, advance, setup_tenant

DECLINED = "Your card was declined. Try another card."
FEB_28 = "2026-02-28T09:00:00Z"  # the first renewal of a plan subscribed at the start (Jan 31 09:00)


@pytest.fixture
def acme(client) -> TenantAccess:
    return setup_tenant(client, "acme")


def portal_post(client, portal: str, action: str, **fields: str):
    csrf = csrf_of(client.get(portal))
    return client.post(f"{portal}/{action}", data={"csrf": csrf, **fields}, follow_redirects=False)


# -- checkout ----------------------------------------------------------------------------------


def test_paying_a_checkout_with_the_test_card_starts_the_plan_and_returns_to_billing(client, acme):
    path = checkout_path(client, acme)
    page = client.get(path)
    for label in ("Starter", "$49.00", "Pay and subscribe", CARD_OK, CARD_CHARGES_FAIL, CARD_DECLINED):
        assert label in page.text, label
    assert_back_to(pay(client, path), "/billing")
    assert card(client, acme)["badge"] == "Active subscription"
    done = client.get(path)
    assert "This checkout is complete" in done.text and "Pay and subscribe" not in done.text
    assert 'href="http://' in done.text and "/billing" in done.text


@pytest.mark.parametrize("card_number", [CARD_DECLINED, CARD_CHARGES_FAIL])
def test_a_declined_card_shows_why_with_the_form_again_and_changes_nothing(client, acme, card_number):
    path = checkout_path(client, acme)
    r = pay(client, path, card_number)
    assert r.status_code == 402 and DECLINED in r.text and "Pay and subscribe" in r.text
    assert card(client, acme)["badge"] == "Trial subscription"
    assert invoices(client, acme) == []


def test_a_card_that_is_not_a_test_card_is_refused_on_the_page(client, acme):
    r = pay(client, checkout_path(client, acme), "1234")
    assert r.status_code == 422 and "test cards only" in r.text
    assert card(client, acme)["badge"] == "Trial subscription"


@pytest.mark.parametrize("fields", [{}, {"csrf": "forged"}])
def test_a_checkout_post_without_its_csrf_token_is_forbidden_and_changes_nothing(client, acme, fields):
    path = checkout_path(client, acme)
    r = client.post(path, data={"card": CARD_OK, **fields}, follow_redirects=False)
    assert r.status_code == 403
    assert card(client, acme)["badge"] == "Trial subscription"
    assert "Pay and subscribe" in client.get(path).text  # still open


def test_one_checkouts_csrf_token_does_not_pay_another(client, acme):
    first, second = checkout_path(client, acme), checkout_path(client, acme, "growth")
    r = client.post(second, data={"card": CARD_OK, "csrf": csrf_of(client.get(first))}, follow_redirects=False)
    assert r.status_code == 403
    assert card(client, acme)["badge"] == "Trial subscription"


def test_an_unknown_checkout_is_a_404_page(client, acme):
    r = client.get("/sandbox/checkout/cs_nope")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert client.post("/sandbox/checkout/cs_nope", data={"card": CARD_OK, "csrf": "x"}).status_code == 404


# -- the portal --------------------------------------------------------------------------------


def test_the_portal_shows_the_help_pages_labels_and_the_default_card(client, acme):
    page = client.get(portal_path(client, acme))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for label in ("Payment Method", "+ Add payment method", "Invoices", "Trial subscription", "Return to Billing",
                  'href="/billing"'):
        assert label in page.text, label
    assert "Cancel subscription" not in page.text  # nothing to cancel on the trial
    portal = subscribed(client, acme)
    page = client.get(portal).text
    for label in ("Card ending in <strong>4242</strong>", "Active subscription", "Cancel subscription"):
        assert label in page, label


def test_a_failed_renewal_is_paid_by_adding_a_card_in_the_portal(client, acme):
    portal = subscribed(client, acme)
    assert_back_to(portal_post(client, portal, "payment-methods", card=CARD_CHARGES_FAIL), portal)
    assert "Card ending in <strong>0341</strong>" in client.get(portal).text
    advance(client, to=FEB_28)
    assert card(client, acme)["badge"] == "Payment issue"
    assert "Payment issue" in client.get(portal).text

    r = portal_post(client, portal, "payment-methods", card=CARD_DECLINED)
    assert r.status_code == 402 and DECLINED in r.text and "+ Add payment method" in r.text
    assert card(client, acme)["badge"] == "Payment issue"

    assert_back_to(portal_post(client, portal, "payment-methods", card=CARD_OK), portal)
    assert card(client, acme)["badge"] == "Active subscription"
    assert [i["status"] for i in invoices(client, acme)] == ["paid", "paid"]


def test_cancel_subscription_and_resume_it_in_the_portal(client, acme):
    portal = subscribed(client, acme)
    r = portal_post(client, portal, "cancel")  # the box "I want to cancel" left unticked
    assert r.status_code == 422 and "I want to cancel" in r.text
    assert card(client, acme)["badge"] == "Active subscription"

    assert_back_to(portal_post(client, portal, "cancel", confirm="yes"), portal)
    assert card(client, acme)["badge"] == "Canceled subscription"
    page = client.get(portal).text
    assert "Canceled subscription" in page and "Resume subscription" in page and "Cancel subscription</button>" \
        not in page

    assert_back_to(portal_post(client, portal, "resume"), portal)
    assert card(client, acme)["badge"] == "Active subscription"
    assert "Cancel subscription" in client.get(portal).text


def test_cancel_on_a_trial_says_why_on_the_page(client, acme):
    r = portal_post(client, portal_path(client, acme), "cancel", confirm="yes")
    assert r.status_code == 409 and "no subscription to cancel" in r.text


@pytest.mark.parametrize("action,fields", [("cancel", {"confirm": "yes"}),
                                           ("payment-methods", {"card": CARD_CHARGES_FAIL}), ("resume", {})])
def test_a_portal_post_without_its_csrf_token_is_forbidden_and_changes_nothing(client, acme, action, fields):
    portal = subscribed(client, acme)
    if action == "resume":
        assert_back_to(portal_post(client, portal, "cancel", confirm="yes"), portal)
    before = card(client, acme)["badge"]
    others = csrf_of(client.get(portal_path(client, setup_tenant(client, "globex"))))
    for csrf in ({}, {"csrf": "forged"}, {"csrf": others}):
        r = client.post(f"{portal}/{action}", data={**fields, **csrf}, follow_redirects=False)
        assert r.status_code == 403, r.text
    assert card(client, acme)["badge"] == before
    assert "Card ending in <strong>4242</strong>" in client.get(portal).text


def test_a_bad_portal_link_is_a_404_page(client, acme):
    portal = portal_path(client, acme)
    for path in (portal + "x", "/sandbox/portal/not-a-token", portal + "x/invoices/in_1"):
        r = client.get(path)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), path
    assert client.post(portal + "x/cancel", data={"csrf": "x", "confirm": "yes"}).status_code == 404


# -- the printable invoice ---------------------------------------------------------------------


def test_the_invoice_page_shows_its_lines_and_total_and_prints(client, acme):
    portal = subscribed(client, acme)
    (inv,) = invoices(client, acme)
    home = client.get(portal).text
    assert f"{portal}/invoices/{inv['id']}" in home and "$49.00" in home
    page = client.get(f"{portal}/invoices/{inv['id']}")
    assert page.status_code == 200
    for text in (inv["id"], "$49.00", "Paid", "Total", "data-print", "/billing/static/portal.js"):
        assert text in page.text, text
    # Print and the print layout come from static files (the CSP allows no inline script or style).
    assert "window.print()" in client.get("/billing/static/portal.js").text
    assert "@media print" in client.get("/billing/static/portal.css").text
    for line in inv["lines"]:
        assert line["description"] in page.text


def test_another_tenants_invoice_is_not_found_through_this_tenants_portal(client, acme):
    globex = setup_tenant(client, "globex")
    subscribed(client, globex)
    (theirs,) = invoices(client, globex)
    r = client.get(f"{portal_path(client, acme)}/invoices/{theirs['id']}")
    assert r.status_code == 404 and theirs["id"] in r.text
