"""The read-only Billing tab page behind a login link: the help page's labels and money in the plan's currency."""

from urllib.parse import urlsplit

from tests.conftest import operator_headers
from tests.helpers import open_session, setup_tenant


def _login(client, tenant_id: str = "acme") -> None:
    url = client.post(f"/v1/tenants/{tenant_id}/users/u-owner/tokens", headers=operator_headers()).json()["login_url"]
    link = urlsplit(url)
    assert link.scheme in ("http", "https") and link.path == "/billing/login"  # absolute, as handed out
    r = client.get(f"{link.path}?{link.query}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/billing"


def test_the_trial_card_plans_and_sessions_render_with_the_help_pages_labels(client):
    acme = setup_tenant(client)
    assert open_session(client, acme, "conv-1").status_code == 201
    _login(client)
    page = client.get("/billing")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for label in ("Trial subscription", "Sessions count", "Trial sessions left", "Trial days left", "Plans",
                  "$49.00", "$199.00", "Book a demo", "Answered only", "conv-1"):
        assert label in page.text, label
    assert "Session limit" not in page.text  # no Session limit card on the trial (R9)


def test_a_paid_plan_shows_the_session_limit_card_and_no_trial_counters(client):
    setup_tenant(client)
    client.put("/v1/tenants/acme/subscription", json={"plan_id": "starter"}, headers=operator_headers())
    _login(client)
    page = client.get("/billing").text
    assert "Active subscription" in page and "Next billing date" in page and "Session limit" in page
    assert "Trial sessions left" not in page
