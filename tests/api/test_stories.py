"""The help page's stories, replayed over HTTP with the test clock (R1-R5, R9, R13)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from agentbilling.api.app import create_app
from agentbilling.client import connect
from tests.support.http import (
    LIMIT_ALMOST,
    LIMIT_REACHED,
    SUBSCRIPTION_ENDED,
    SUBSCRIPTION_ENDED_HELP,
    admission,
    assert_problem,
    card,
    message,
    put_on_plan,
    session_list,
    set_limit,
    view,
)
from tests.support.tenants import advance, open_session, setup_tenant

HOUR = 3600
DAY = 24 * HOUR


def open_many(client, access, count: int, prefix: str = "s", start: int = 0) -> None:
    for n in range(start, start + count):
        r = open_session(client, access, f"{prefix}-{n}")
        assert r.status_code == 201, (n, r.text)


# -- How sessions are billed (R1) ------------------------------------------------------------


def test_a_36_hour_conversation_is_one_session_and_two_billable_sessions(client):
    acme = setup_tenant(client)
    r = open_session(client, acme, "conv-1")
    assert r.status_code == 201
    assert r.json()["admitted"] is True and r.json()["billable_sessions"] == 1

    advance(client, seconds=24 * HOUR - 1)  # still the first 24-hour window
    assert message(client, acme, "conv-1").json()["billable_sessions"] == 1
    assert card(client, acme)["sessions_count"] == 1

    advance(client, seconds=1)  # exactly 24 h: the second window begins
    assert message(client, acme, "conv-1", "agent").json()["billable_sessions"] == 2

    advance(client, seconds=12 * HOUR)  # 36 h
    r = message(client, acme, "conv-1")
    assert r.status_code == 200 and r.json()["billable_sessions"] == 2

    sessions = session_list(client, acme)
    assert [(s["id"], s["billable_sessions"]) for s in sessions] == [("conv-1", 2)]
    assert card(client, acme)["sessions_count"] == 2
    got = client.get("/v1/sessions/conv-1", headers=acme.key_headers).json()
    assert got["billable_sessions"] == 2 and got["status"] == "open"


def test_an_idle_session_costs_nothing_more_and_ending_it_adds_nothing(client):
    acme = setup_tenant(client)
    open_session(client, acme, "idle")
    advance(client, seconds=3 * DAY)  # no messages: the latest activity is still the start
    ended = client.post("/v1/sessions/idle/end", headers=acme.key_headers)
    assert ended.status_code == 200
    assert ended.json()["status"] == "ended" and ended.json()["billable_sessions"] == 1
    assert card(client, acme)["sessions_count"] == 1


# -- The free trial (R5) ----------------------------------------------------------------------


def test_a_new_tenant_is_on_the_trial_with_14_days_and_50_sessions(client):
    acme = setup_tenant(client)
    tab = view(client, acme)
    current = tab["cards"][0]
    assert current["badge"] == "Trial subscription"
    assert current["trial_days_left"] == 14
    assert current["trial_sessions_left"] == 50
    assert current["sessions_count"] == 0
    assert tab["session_limit"] is None  # no Session limit card on the trial (R9)
    assert tab["banners"] == []
    assert admission(client, acme) == {"accepting": True, "reason": None, "message": None}


def test_the_trial_ends_when_its_days_run_out(client):
    acme = setup_tenant(client)
    open_session(client, acme, "early")
    advance(client, seconds=14 * DAY - 1)
    assert open_session(client, acme, "last-second").status_code == 201
    assert card(client, acme)["trial_days_left"] == 1

    advance(client, seconds=1)
    r = open_session(client, acme, "too-late")
    assert_problem(r, 402, "subscription-ended", SUBSCRIPTION_ENDED)

    tab = view(client, acme)
    assert tab["cards"][0]["badge"] == "Expired subscription"
    assert tab["cards"][0]["trial_days_left"] == 0
    assert tab["banners"] == [{"title": SUBSCRIPTION_ENDED, "text": SUBSCRIPTION_ENDED_HELP}]
    assert admission(client, acme) == {"accepting": False, "reason": "subscription-ended",
                                       "message": SUBSCRIPTION_ENDED}
    # The refusal counted nothing and left no session behind.
    assert tab["cards"][0]["sessions_count"] == 2
    assert {s["id"] for s in session_list(client, acme)} == {"early", "last-second"}


def test_the_trial_ends_when_its_sessions_run_out(client):
    acme = setup_tenant(client)
    open_many(client, acme, 49)
    assert card(client, acme)["trial_sessions_left"] == 1
    assert admission(client, acme)["accepting"] is True

    open_many(client, acme, 1, start=49)  # the 50th
    r = open_session(client, acme, "s-50")  # the 51st
    assert_problem(r, 402, "subscription-ended", SUBSCRIPTION_ENDED)

    current = card(client, acme)
    assert current["badge"] == "Expired subscription"
    assert current["trial_sessions_left"] == 0
    assert current["sessions_count"] == 50
    assert admission(client, acme)["reason"] == "subscription-ended"


def test_sessions_already_running_may_push_trial_usage_past_50_but_sessions_left_stays_0(client):
    acme = setup_tenant(client)
    open_many(client, acme, 50)
    advance(client, seconds=DAY)
    assert message(client, acme, "s-0").json()["billable_sessions"] == 2  # never cut off
    current = card(client, acme)
    assert current["sessions_count"] == 51
    assert current["trial_sessions_left"] == 0
    assert current["badge"] == "Expired subscription"


def test_trial_ending_soon_once_7_days_or_fewer_remain(client):
    acme = setup_tenant(client)
    advance(client, seconds=6 * DAY + 23 * HOUR)  # 7 days and 1 hour left: rounded up to 8
    current = card(client, acme)
    assert (current["trial_days_left"], current["badge"]) == (8, "Trial subscription")

    advance(client, seconds=HOUR)  # exactly 7 days left
    current = card(client, acme)
    assert (current["trial_days_left"], current["badge"]) == (7, "Trial ending soon")

    advance(client, seconds=1)  # 6 days 23:59:59 left still reads 7
    assert card(client, acme)["trial_days_left"] == 7

    advance(client, seconds=5 * DAY)
    current = card(client, acme)
    assert (current["trial_days_left"], current["badge"]) == (2, "Trial ending soon")
    assert open_session(client, acme, "still-open").status_code == 201


def test_trial_ending_soon_once_90_percent_of_the_sessions_are_used(client):
    acme = setup_tenant(client)
    open_many(client, acme, 44)
    current = card(client, acme)
    assert (current["badge"], current["trial_sessions_left"]) == ("Trial subscription", 6)

    open_many(client, acme, 1, start=44)  # 45 of 50
    current = card(client, acme)
    assert (current["badge"], current["trial_sessions_left"]) == ("Trial ending soon", 5)
    assert current["trial_days_left"] == 14


def test_subscribing_after_the_trial_expired_opens_the_gate_again(client):
    acme = setup_tenant(client)
    advance(client, seconds=15 * DAY)
    assert open_session(client, acme, "before").status_code == 402
    tab = put_on_plan(client, "acme", "starter")
    assert tab["cards"][0]["badge"] == "Active subscription"
    assert tab["admission"]["accepting"] is True
    assert open_session(client, acme, "after").status_code == 201
    assert card(client, acme)["sessions_count"] == 1


# -- Answered only (R2) ----------------------------------------------------------------------


def test_an_unanswered_outbound_session_on_answered_only_costs_nothing_until_the_customer_replies(client):
    acme = setup_tenant(client)
    put_on_plan(client, "acme", "outreach")
    assert card(client, acme)["tags"] == ["Answered only"]

    r = open_session(client, acme, "call-1", direction="outbound")
    assert r.status_code == 201
    assert r.json()["billable_sessions"] == 0 and r.json()["answered_only"] is True
    assert card(client, acme)["sessions_count"] == 0

    advance(client, seconds=30 * HOUR)
    r = message(client, acme, "call-1", "agent")  # the agent's own messages do not count
    assert r.json()["billable_sessions"] == 0 and r.json()["answered_at"] is None
    assert card(client, acme)["sessions_count"] == 0

    r = message(client, acme, "call-1", "customer")  # answered 30 h after the start: counts from the start
    assert r.json()["billable_sessions"] == 2
    assert r.json()["answered_at"] == "2026-02-01T15:00:00Z"
    assert card(client, acme)["sessions_count"] == 2
    assert [(s["id"], s["billable_sessions"]) for s in session_list(client, acme)] == [("call-1", 2)]


def test_inbound_sessions_always_count_on_answered_only(client):
    acme = setup_tenant(client)
    put_on_plan(client, "acme", "outreach")
    r = open_session(client, acme, "inbound-1", direction="inbound")
    assert r.json()["billable_sessions"] == 1
    assert card(client, acme)["sessions_count"] == 1


def test_on_answered_only_an_outbound_session_is_admitted_below_the_limit_and_counts_when_answered(client):
    acme = setup_tenant(client)
    put_on_plan(client, "acme", "outreach")
    assert set_limit(client, acme, 2).status_code == 200
    assert open_session(client, acme, "out-1", direction="outbound").status_code == 201  # 0 used < 2
    assert open_session(client, acme, "in-1").status_code == 201
    assert open_session(client, acme, "in-2").status_code == 201  # 2 used: the limit
    r = open_session(client, acme, "out-2", direction="outbound")
    assert_problem(r, 402, "session-limit-reached", LIMIT_REACHED)

    # A late reply to a running session is never cut off: usage passes the limit.
    assert message(client, acme, "out-1").json()["billable_sessions"] == 1
    limit = view(client, acme)["session_limit"]
    assert (limit["used"], limit["limit"], limit["warning"]) == (3, 2, LIMIT_REACHED)


def test_a_session_keeps_the_rule_of_the_plan_it_started_under(client):
    acme = setup_tenant(client)
    assert open_session(client, acme, "trial-out", direction="outbound").json()["billable_sessions"] == 1
    put_on_plan(client, "acme", "outreach")
    out = open_session(client, acme, "outreach-out", direction="outbound").json()
    assert out["billable_sessions"] == 0
    put_on_plan(client, "acme", "starter")

    advance(client, seconds=HOUR)
    assert message(client, acme, "outreach-out", "agent").json()["billable_sessions"] == 0
    got = client.get("/v1/sessions/trial-out", headers=acme.key_headers).json()
    assert (got["answered_only"], got["billable_sessions"]) == (False, 1)
    r = message(client, acme, "outreach-out", "customer")
    assert r.json()["billable_sessions"] == 1 and r.json()["answered_only"] is True
    assert card(client, acme)["sessions_count"] == 1  # the starter period's counter


# -- The session limit (R9) -------------------------------------------------------------------


def test_session_limit_warnings_then_the_gate_closes_and_reset_limit_reopens_it(client):
    acme = setup_tenant(client)
    tab = put_on_plan(client, "acme", "starter")
    assert tab["session_limit"] == {"limit": 1000, "base_limit": 1000, "used": 0, "custom": False, "warning": None}

    r = set_limit(client, acme, 10)
    assert r.status_code == 200, r.text
    assert r.json()["session_limit"] == {"limit": 10, "base_limit": 1000, "used": 0, "custom": True,
                                         "warning": None}

    open_many(client, acme, 7)
    assert view(client, acme)["session_limit"]["warning"] is None  # 70%
    open_many(client, acme, 1, start=7)
    limit = view(client, acme)["session_limit"]
    assert (limit["used"], limit["warning"]) == (8, LIMIT_ALMOST)  # 80%
    open_many(client, acme, 2, start=8)
    tab = view(client, acme)
    assert (tab["session_limit"]["used"], tab["session_limit"]["warning"]) == (10, LIMIT_REACHED)
    assert [b["title"] for b in tab["banners"]] == [LIMIT_REACHED]

    r = open_session(client, acme, "s-10")  # the 11th
    assert_problem(r, 402, "session-limit-reached", LIMIT_REACHED)
    assert admission(client, acme) == {"accepting": False, "reason": "session-limit-reached",
                                       "message": LIMIT_REACHED}
    assert card(client, acme)["sessions_count"] == 10

    r = client.delete("/v1/billing/session-limit", headers=acme.owner_headers)
    assert r.status_code == 200, r.text
    assert r.json()["session_limit"] == {"limit": 1000, "base_limit": 1000, "used": 10, "custom": False,
                                         "warning": None}
    assert open_session(client, acme, "s-10").status_code == 201
    assert card(client, acme)["sessions_count"] == 11


def test_raising_the_limit_resumes_at_once(client):
    acme = setup_tenant(client)
    put_on_plan(client, "acme", "starter")
    set_limit(client, acme, 1)
    open_session(client, acme, "a")
    assert open_session(client, acme, "b").status_code == 402
    limit = set_limit(client, acme, 2).json()["session_limit"]
    assert (limit["limit"], limit["used"], limit["warning"]) == (2, 1, None)  # 50%
    assert open_session(client, acme, "b").status_code == 201


def test_a_limit_below_current_usage_is_allowed_and_closes_the_gate(client):
    acme = setup_tenant(client)
    put_on_plan(client, "acme", "starter")
    open_many(client, acme, 5)
    r = set_limit(client, acme, 3)
    assert r.status_code == 200
    assert r.json()["session_limit"] == {"limit": 3, "base_limit": 1000, "used": 5, "custom": True,
                                         "warning": LIMIT_REACHED}
    assert_problem(open_session(client, acme, "sixth"), 402, "session-limit-reached", LIMIT_REACHED)


def test_a_tenants_own_limit_survives_a_plan_change_lowered_to_the_new_plans_highest(client):
    acme = setup_tenant(client)
    put_on_plan(client, "acme", "outreach")
    set_limit(client, acme, 15000)
    tab = put_on_plan(client, "acme", "starter")
    assert tab["session_limit"]["limit"] == 5000 and tab["session_limit"]["custom"] is True
    tab = put_on_plan(client, "acme", "growth")
    assert tab["session_limit"]["limit"] == 5000  # kept, not raised back


def test_the_counter_restarts_at_the_start_of_the_next_billing_period(client):
    acme = setup_tenant(client)
    put_on_plan(client, "acme", "starter")  # anchored at 2026-01-31T09:00Z
    set_limit(client, acme, 2)
    open_many(client, acme, 2)
    assert open_session(client, acme, "third").status_code == 402
    assert card(client, acme)["next_billing_date"] == "2026-02-28"

    advance(client, to="2026-02-28T08:59:59Z")
    assert open_session(client, acme, "third").status_code == 402

    advance(client, seconds=1)  # a Jan 31 anchor renews on Feb 28
    current = card(client, acme)
    assert current["sessions_count"] == 0
    assert current["next_billing_date"] == "2026-03-31"
    limit = view(client, acme)["session_limit"]
    assert (limit["limit"], limit["used"], limit["warning"]) == (2, 0, None)  # the tenant's limit holds
    assert open_session(client, acme, "third").status_code == 201
    assert card(client, acme)["sessions_count"] == 1


def test_a_session_running_across_the_period_boundary_counts_its_later_window_in_the_new_period(client):
    acme = setup_tenant(client)
    put_on_plan(client, "acme", "starter")
    advance(client, to="2026-02-27T12:00:00Z")
    open_session(client, acme, "long")
    assert card(client, acme)["sessions_count"] == 1

    advance(client, to="2026-02-28T12:00:00Z")  # the new period began at 09:00; 24 h since the start
    assert card(client, acme)["sessions_count"] == 0
    assert message(client, acme, "long").json()["billable_sessions"] == 2
    assert card(client, acme)["sessions_count"] == 1  # the second window, recognised now (R3)


def test_a_trial_session_running_into_the_paid_plan_counts_its_later_window_on_the_plan(client):
    acme = setup_tenant(client)
    open_session(client, acme, "from-the-trial")
    advance(client, seconds=HOUR)
    put_on_plan(client, "acme", "starter")
    assert card(client, acme)["sessions_count"] == 0
    advance(client, seconds=DAY)  # 25 h after the session's start
    assert message(client, acme, "from-the-trial").json()["billable_sessions"] == 2
    assert card(client, acme)["sessions_count"] == 1


# -- Admission: replays, refusals, ended sessions (R4) -----------------------------------------


def test_opening_the_same_session_id_again_returns_the_first_answer_and_counts_nothing(client):
    acme = setup_tenant(client)
    first = open_session(client, acme, "conv-1")
    assert first.status_code == 201
    advance(client, seconds=DAY + HOUR)
    message(client, acme, "conv-1")  # now 2 billable sessions

    again = open_session(client, acme, "conv-1")
    assert again.status_code == 200
    assert again.json() == first.json()
    assert card(client, acme)["sessions_count"] == 2
    assert len(session_list(client, acme)) == 1


def test_a_replay_answers_even_once_the_gate_has_closed(client):
    acme = setup_tenant(client)
    first = open_session(client, acme, "conv-1")
    advance(client, seconds=14 * DAY)
    assert open_session(client, acme, "new").status_code == 402
    again = open_session(client, acme, "conv-1")
    assert (again.status_code, again.json()) == (200, first.json())


def test_the_same_session_id_with_another_agent_or_direction_is_a_conflict(client):
    acme = setup_tenant(client)
    open_session(client, acme, "conv-1", agent_id="agent-1")
    assert_problem(open_session(client, acme, "conv-1", agent_id="agent-2"), 409, "session-id-reused")
    assert_problem(open_session(client, acme, "conv-1", direction="outbound"), 409, "session-id-reused")
    assert card(client, acme)["sessions_count"] == 1


def test_a_refused_session_id_may_be_tried_again_once_the_gate_opens(client):
    acme = setup_tenant(client)
    put_on_plan(client, "acme", "starter")
    set_limit(client, acme, 1)
    open_session(client, acme, "first")
    assert open_session(client, acme, "second").status_code == 402
    assert_problem(client.get("/v1/sessions/second", headers=acme.key_headers), 404)  # the refusal is not stored
    assert [s["id"] for s in session_list(client, acme)] == ["first"]

    client.delete("/v1/billing/session-limit", headers=acme.owner_headers)
    r = open_session(client, acme, "second")
    assert r.status_code == 201  # a new admission, not a replay
    assert r.json()["billable_sessions"] == 1
    assert card(client, acme)["sessions_count"] == 2


def test_messages_to_an_ended_session_are_refused_with_409(client):
    acme = setup_tenant(client)
    open_session(client, acme, "conv-1")
    advance(client, seconds=HOUR)
    ended = client.post("/v1/sessions/conv-1/end", headers=acme.key_headers).json()
    assert ended["ended_at"] == "2026-01-31T10:00:00Z"

    advance(client, seconds=DAY)
    assert_problem(message(client, acme, "conv-1"), 409, "session-ended")
    assert_problem(message(client, acme, "conv-1", "agent"), 409, "session-ended")
    got = client.get("/v1/sessions/conv-1", headers=acme.key_headers).json()
    assert got["billable_sessions"] == 1 and got["last_activity_at"] == "2026-01-31T09:00:00Z"
    again = client.post("/v1/sessions/conv-1/end", headers=acme.key_headers)
    assert again.status_code == 200 and again.json()["ended_at"] == "2026-01-31T10:00:00Z"
    assert card(client, acme)["sessions_count"] == 1


def test_messages_and_end_for_an_unknown_session_are_404(client):
    acme = setup_tenant(client)
    assert_problem(message(client, acme, "nope"), 404)
    assert_problem(client.post("/v1/sessions/nope/end", headers=acme.key_headers), 404)
    assert_problem(client.get("/v1/sessions/nope", headers=acme.key_headers), 404)


def test_admission_answers_accepting_reason_and_message(client):
    acme = setup_tenant(client)
    body = admission(client, acme)
    assert set(body) == {"accepting", "reason", "message"}
    assert body == {"accepting": True, "reason": None, "message": None}
    put_on_plan(client, "acme", "starter")
    set_limit(client, acme, 1)
    open_session(client, acme, "one")
    assert admission(client, acme) == {"accepting": False, "reason": "session-limit-reached",
                                       "message": LIMIT_REACHED}


# -- Billing turned off (R4, R13) --------------------------------------------------------------


@pytest.fixture
def billing_off_client(settings, clock) -> Iterator[TestClient]:
    service = connect(settings.model_copy(update={"billing_enabled": False}), clock=clock, upgrade=False)
    try:
        with TestClient(create_app(service)) as c:
            yield c
    finally:
        service.close()


def test_with_billing_off_the_gate_is_always_open_and_the_billing_api_says_it_is_handled_elsewhere(billing_off_client):
    client = billing_off_client
    acme = setup_tenant(client)
    open_many(client, acme, 51)  # past the trial's sessions
    advance(client, seconds=15 * DAY)  # and past its days
    assert open_session(client, acme, "after-the-trial").status_code == 201
    assert admission(client, acme) == {"accepting": True, "reason": None, "message": None}

    for method, path in [("GET", "/v1/billing"), ("GET", "/v1/billing/sessions"),
                         ("PUT", "/v1/billing/session-limit"), ("DELETE", "/v1/billing/session-limit")]:
        kwargs = {"json": {"limit": 10}} if method == "PUT" else {}
        r = client.request(method, path, headers=acme.owner_headers, **kwargs)
        body = assert_problem(r, 404)
        assert "handled outside the portal" in body["detail"] and "administrator" in body["detail"], body

    user = client.get("/v1/tenants/acme/users/u-owner", headers={"Authorization": "Bearer op-test-key"}).json()
    assert user["billing_visible"] is False
