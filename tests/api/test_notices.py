"""R14 over the API with the test clock: which notices a tenant gets, each once, in order."""

from __future__ import annotations

from tests.support.service import operator_headers
from tests.support.subscribing import (  # noqa: F401 (settings and acme are fixtures)
    CARD_CHARGES_FAIL,
    acme,
    add_card,
    change_plan,
    fill,
    portal_action,
    settings,
    subscribe,
)
from tests.support.tenants import advance, open_session

FEB_28 = "2026-02-28T09:00:00Z"


def notices(client, access) -> list[dict]:
    r = client.get("/v1/billing/notices?limit=100", headers=access.owner_headers)
    assert r.status_code == 200, r.text
    return list(reversed(r.json()["data"]))  # oldest first, to read in order


def types(client, access) -> list[str]:
    return [n["type"] for n in notices(client, access)]


def test_a_whole_trial_gets_each_reminder_once_in_order(client, acme):
    fill(client, acme, "a", 30)  # 60% of 50
    advance(client, seconds=60)  # a worker pass
    assert types(client, acme) == ["trial_sessions_60"]
    advance(client, to="2026-02-07T09:00:00Z")  # exactly 7 days left
    fill(client, acme, "b", 15)  # 45: 90%
    advance(client, to="2026-02-12T09:00:00Z")  # 2 days left
    advance(client, to="2026-02-20T00:00:00Z")  # the trial ended on Feb 14
    advance(client, seconds=86400)  # later passes add nothing
    assert types(client, acme) == ["trial_sessions_60", "trial_days_7", "trial_sessions_90", "trial_days_2",
                                   "trial_ended"]
    first = notices(client, acme)[0]
    assert first["title"] == "You have used 60% of your trial sessions"
    assert first["email"]["to"] == "billing@acme.test"
    assert first["email"]["status"] == "sent" and first["email"]["sent_at"]  # into this run's outbox folder
    assert notices(client, acme)[1]["created_at"] == "2026-02-07T09:00:00Z"  # on the dot, not at the next pass


def test_a_tenant_that_subscribes_on_day_3_gets_no_more_trial_reminders(client, acme):
    advance(client, seconds=3 * 86400)
    subscribe(client, acme, "mini")
    advance(client, to="2026-02-20T00:00:00Z")
    assert "trial_days_7" not in types(client, acme) and "trial_ended" not in types(client, acme)


def test_the_limit_warns_once_at_80_and_100_percent_per_period(client, acme):
    subscribe(client, acme, "maxi")  # base limit 6
    r = client.put("/v1/billing/session-limit", json={"limit": 5}, headers=acme.owner_headers)
    assert r.status_code == 200
    fill(client, acme, "p1", 4)  # 80%
    advance(client, seconds=60)
    fill(client, acme, "p1b", 1)  # 100%
    advance(client, seconds=60)
    advance(client, seconds=60)
    assert [t for t in types(client, acme) if t.startswith("limit")] == ["limit_80", "limit_100"]
    advance(client, to=FEB_28)  # a new period: the counter restarts, and so do its warnings
    fill(client, acme, "p2", 5)
    advance(client, seconds=60)
    assert [t for t in types(client, acme) if t.startswith("limit")] == ["limit_80", "limit_100"] * 2


def test_a_failed_payment_then_grace_ending_then_overdue_then_expired(client, acme):
    subscribe(client, acme, "mini")
    assert add_card(client, "acme", CARD_CHARGES_FAIL).status_code == 200
    advance(client, to="2026-03-31T09:00:00Z")  # renewal fails Feb 28; grace to Mar 7; unpaid at Mar 31
    assert [t for t in types(client, acme) if not t.startswith("limit")] == [
        "payment_failed", "grace_ending", "payment_overdue", "subscription_expired"]
    by_type = {n["type"]: n for n in notices(client, acme)}
    assert by_type["payment_failed"]["created_at"] == "2026-02-28T09:00:00Z"
    assert by_type["grace_ending"]["created_at"] == "2026-03-06T09:00:00Z"  # a day before grace ends
    assert by_type["payment_overdue"]["created_at"] == "2026-03-07T09:00:00Z"
    assert "March 7, 2026" in by_type["payment_failed"]["text"]


def test_a_scheduled_change_is_told_when_scheduled_and_when_applied(client, acme):
    subscribe(client, acme, "mini")
    assert change_plan(client, acme, "maxi", "custom_date", "2026-02-10").status_code == 200
    assert change_plan(client, acme, "maxi", "custom_date", "2026-02-10").status_code == 200  # the same again
    advance(client, to="2026-02-11T00:00:00Z")
    assert types(client, acme) == ["plan_change_scheduled", "plan_change_applied"]
    applied = notices(client, acme)[1]
    assert applied["title"] == "You are now on the Maxi plan"
    assert applied["created_at"] == "2026-02-10T00:00:00Z"  # when it took effect


def test_cancel_is_told_then_the_end(client, acme):
    subscribe(client, acme, "mini")
    assert portal_action(client, "acme", "cancel").status_code == 200
    advance(client, to="2026-03-01T00:00:00Z")
    assert types(client, acme) == ["subscription_canceled", "subscription_expired"]


def test_notices_are_the_tenants_own_and_need_billing_rights(client, acme):
    fill(client, acme, "a", 30)
    advance(client, seconds=60)
    r = client.post("/v1/tenants", json={"id": "other", "name": "Other", "billing_email": "b@other.test"},
                    headers=operator_headers())
    assert r.status_code == 201
    token = client.post("/v1/tenants/other/users", json={"id": "o", "email": "o@other.test", "role": "owner"},
                        headers=operator_headers())
    assert token.status_code == 201
    t = client.post("/v1/tenants/other/users/o/tokens", headers=operator_headers()).json()["token"]
    assert client.get("/v1/billing/notices", headers={"Authorization": f"Bearer {t}"}).json()["data"] == []
    assert client.get("/v1/billing/notices").status_code == 401
    assert open_session(client, acme, "x").status_code == 201


def test_a_pass_writes_only_notices_that_are_new(client, acme, billing):
    from sqlalchemy import event

    fill(client, acme, "a", 30)
    advance(client, to="2026-02-08T00:00:00Z")  # 60% and 7 days left: both recorded
    writes: list[str] = []

    def seen(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")) and "notices" in statement:
            writes.append(statement)

    event.listen(billing.db.engine, "before_cursor_execute", seen)
    try:
        assert billing.notices.detect(billing.now()) == 0  # still due, already recorded
        assert writes == []
    finally:
        event.remove(billing.db.engine, "before_cursor_execute", seen)
    assert types(client, acme) == ["trial_sessions_60", "trial_days_7"]


def test_with_billing_off_no_reminders_are_made(settings, clock):
    from agentbilling.client import connect
    from agentbilling.settings import Settings

    b = connect(Settings(**{**settings.model_dump(), "billing_enabled": False}), clock=clock, upgrade=False)
    try:
        b.create_tenant("acme", "Acme", "billing@acme.test")
        for i in range(50):
            b.open_session("acme", f"s{i}", agent_id="a", direction="inbound")
        b.advance_clock(seconds=20 * 86400)
        assert b.list_notices("acme")[0] == []
    finally:
        b.close()
