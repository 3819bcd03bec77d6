"""The usage chart: billable sessions per UTC day, each on the day its 24-hour window began."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from agentbilling.domain.metering import Direction, Sender, Session
from agentbilling.domain.subscription import standing
from agentbilling.domain.usage import DayUsage, chart_window, units_by_day, window_starts
from tests.support.domain import DAY, STARTER, T0, paid_sub, trial_sub

HOUR = timedelta(hours=1)


def opened(at, *, direction=Direction.INBOUND, answered_only=False, sid="s"):
    return Session.open(id=sid, agent_id="a", direction=direction, answered_only=answered_only, now=at)


def test_a_36_hour_conversation_is_two_billable_sessions_on_two_days():
    s = opened(T0).on_message(Sender.CUSTOMER, T0 + 36 * HOUR)
    assert s.billable_sessions == 2
    assert window_starts(s) == [T0, T0 + DAY]
    days = units_by_day([s], T0, T0 + 2 * DAY)
    assert days == [DayUsage(T0.date(), 1), DayUsage((T0 + DAY).date(), 1), DayUsage((T0 + 2 * DAY).date(), 0)]


def test_every_day_of_the_window_is_there_even_with_no_sessions():
    days = units_by_day([], T0, T0 + 3 * DAY + HOUR)
    assert [d.day for d in days] == [(T0 + k * DAY).date() for k in range(4)]
    assert all(d.billable_sessions == 0 for d in days)


def test_an_outbound_session_on_answered_only_counts_from_the_customers_first_reply():
    s = opened(T0, direction=Direction.OUTBOUND, answered_only=True)
    assert window_starts(s) == []  # unanswered: nothing to chart
    answered = s.on_message(Sender.CUSTOMER, T0 + 30 * HOUR)  # both windows become countable at once
    assert window_starts(answered) == [T0 + 30 * HOUR, T0 + 30 * HOUR]
    assert units_by_day([answered], T0, T0 + 2 * DAY)[1] == DayUsage((T0 + DAY).date(), 2)


def test_windows_that_began_before_the_period_are_left_off():
    s = opened(T0 - 2 * DAY).on_message(Sender.AGENT, T0 + HOUR)  # 3 windows, the last from T0 on
    days = units_by_day([s], T0, T0 + DAY)
    assert sum(d.billable_sessions for d in days) == 1


def test_the_window_is_the_trial_or_the_paid_period_up_to_now():
    trial = trial_sub()
    assert chart_window(standing(trial, T0 + 3 * DAY), T0 + 3 * DAY) == (T0, T0 + 3 * DAY, T0 + 14 * DAY)
    ended = chart_window(standing(trial, T0 + 30 * DAY), T0 + 30 * DAY)
    assert ended == (T0, T0 + 14 * DAY, T0 + 14 * DAY)
    paid = paid_sub(STARTER)
    now = T0 + 40 * DAY  # Mar 12: the second period, Feb 28 to Mar 31
    since, until, end = chart_window(standing(paid, now), now)
    assert (since, until, end) == (T0.replace(month=2, day=28), now, T0.replace(month=3, day=31))


def test_the_days_left_in_the_period_are_there_at_zero():
    s = opened(T0 + HOUR)
    days = units_by_day([s], T0, T0 + 2 * HOUR, T0 + 3 * DAY)
    assert [(d.day.day, d.billable_sessions) for d in days] == [(31, 1), (1, 0), (2, 0), (3, 0)]  # to Feb 3, 09:00


@given(
    starts=st.lists(st.integers(min_value=0, max_value=20 * 24), min_size=0, max_size=20),
    lengths=st.lists(st.integers(min_value=0, max_value=5 * 24), min_size=20, max_size=20),
)
def test_inside_the_window_the_chart_adds_up_to_the_billable_sessions(starts, lengths):
    sessions = []
    for i, (h, length) in enumerate(zip(starts, lengths, strict=False)):
        s = opened(T0 + h * HOUR, sid=f"s{i}").on_message(Sender.CUSTOMER, T0 + (h + length) * HOUR)
        sessions.append(s)
    until = T0 + 30 * DAY
    days = units_by_day(sessions, T0, until)
    assert sum(d.billable_sessions for d in days) == sum(s.billable_sessions for s in sessions)
