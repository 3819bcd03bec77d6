"""R1 (billable sessions of a session) and R2 (Answered only) on plain Session objects."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentbilling.domain.errors import Conflict, SessionEnded
from agentbilling.domain.metering import (
    WINDOW,
    Direction,
    Sender,
    Session,
    billable_units,
    counted_units,
)
from tests.support.domain import DAY, T0, US, durations, fast, moments

H = timedelta(hours=1)
DAY_US = 24 * 3600 * 10**6


def open_session(direction: Direction = Direction.INBOUND, *, answered_only: bool = False, now=T0) -> Session:
    return Session.open(id="s1", agent_id="a1", direction=direction, answered_only=answered_only, now=now)


def expected_units(delta: timedelta) -> int:
    """floor((last − start) / 24h) + 1, computed on whole microseconds."""
    micros = (delta.days * 86400 + delta.seconds) * 10**6 + delta.microseconds
    return micros // DAY_US + 1


# --- R1: the formula -------------------------------------------------------------------------


def test_window_is_24_hours():
    assert WINDOW == timedelta(hours=24)


@pytest.mark.parametrize(
    ("elapsed", "units"),
    [
        (timedelta(0), 1),
        (timedelta(hours=23, minutes=59, seconds=59), 1),
        (DAY - US, 1),
        (DAY, 2),  # exactly 24h starts the second window
        (timedelta(hours=36), 2),  # the help page's example
        (2 * DAY - US, 2),
        (2 * DAY, 3),
        (10 * DAY + H, 11),
    ],
)
def test_billable_units_examples(elapsed, units):
    assert billable_units(T0, T0 + elapsed) == units


@fast
@given(start=moments, elapsed=durations)
def test_billable_units_is_floor_of_elapsed_windows_plus_one(start, elapsed):
    assert billable_units(start, start + elapsed) == expected_units(elapsed)


@fast
@given(start=moments, a=durations, b=durations)
def test_billable_units_is_monotone_in_last_activity(start, a, b):
    lo, hi = sorted((a, b))
    assert billable_units(start, start + lo) <= billable_units(start, start + hi)


@fast
@given(start=moments, k=st.integers(0, 500), offset=st.timedeltas(timedelta(0), DAY - US))
def test_every_instant_of_a_window_bills_the_same(start, k, offset):
    assert billable_units(start, start + k * WINDOW + offset) == k + 1


# --- R1: a Session over time -----------------------------------------------------------------


def test_a_36_hour_conversation_is_one_session_and_two_billable_sessions():
    s = open_session()
    s = s.on_message(Sender.CUSTOMER, T0 + H)
    s = s.on_message(Sender.AGENT, T0 + timedelta(hours=36))
    assert s.billable_sessions == 2
    assert s.id == "s1"  # still the one session


def test_opening_counts_one_unit():
    s = open_session()
    assert s.billable_sessions == 1
    assert s.started_at == s.last_activity_at == T0
    assert s.answered_at is None and s.ended_at is None and not s.ended


def test_idle_time_costs_nothing():
    s = open_session().on_message(Sender.CUSTOMER, T0 + H)
    # Nothing happens for ten days; the next message is what counts, and only its window.
    assert s.billable_sessions == 1
    s_late = s.on_message(Sender.AGENT, T0 + 10 * DAY + H)
    assert s_late.billable_sessions == 11
    # The same idle stretch ended without messages bills nothing more.
    assert s.end(T0 + 10 * DAY).billable_sessions == 1


@fast
@given(elapsed=durations, end_after=durations)
def test_ending_adds_nothing(elapsed, end_after):
    s = open_session().on_message(Sender.CUSTOMER, T0 + elapsed)
    ended = s.end(T0 + elapsed + end_after)
    assert ended.ended
    assert ended.ended_at == T0 + elapsed + end_after
    assert ended.billable_sessions == s.billable_sessions
    assert ended.last_activity_at == s.last_activity_at


def test_ending_twice_keeps_the_first_end():
    s = open_session().end(T0 + H)
    assert s.end(T0 + 5 * DAY) is s
    assert s.ended_at == T0 + H


@pytest.mark.parametrize("sender", list(Sender))
def test_messages_after_end_raise_session_ended(sender):
    s = open_session().end(T0 + H)
    with pytest.raises(SessionEnded) as exc:
        s.on_message(sender, T0 + 2 * H)
    assert exc.value.code == "session-ended"
    assert isinstance(exc.value, Conflict)  # a 409 at the edge
    assert "s1" in exc.value.detail


messages = st.lists(
    st.tuples(st.sampled_from(list(Sender)), durations), min_size=0, max_size=12
)


@fast
@given(
    direction=st.sampled_from(list(Direction)),
    answered_only=st.booleans(),
    msgs=messages,
)
def test_on_message_never_decreases_units_and_never_moves_activity_back(direction, answered_only, msgs):
    s = open_session(direction, answered_only=answered_only)
    for sender, offset in msgs:
        nxt = s.on_message(sender, T0 + offset)
        assert nxt.billable_sessions >= s.billable_sessions
        assert nxt.last_activity_at >= s.last_activity_at
        assert nxt.started_at == T0
        assert nxt.answered_only == answered_only  # a session keeps the rule it started under
        s = nxt


@fast
@given(direction=st.sampled_from(list(Direction)), answered_only=st.booleans(), msgs=messages)
def test_units_after_any_messages_follow_r1_and_r2(direction, answered_only, msgs):
    s = open_session(direction, answered_only=answered_only)
    for sender, offset in msgs:
        s = s.on_message(sender, T0 + offset)
    answered = any(sender is Sender.CUSTOMER for sender, _ in msgs)
    last = max([timedelta(0), *(offset for _, offset in msgs)])
    if answered_only and direction is Direction.OUTBOUND and not answered:
        assert s.billable_sessions == 0
    else:
        assert s.billable_sessions == expected_units(last)
    assert s.last_activity_at == T0 + last


# --- R2: Answered only -----------------------------------------------------------------------


@fast
@given(agent_offsets=st.lists(durations, max_size=10))
def test_outbound_unanswered_on_answered_only_is_zero_whatever_the_activity(agent_offsets):
    s = open_session(Direction.OUTBOUND, answered_only=True)
    assert s.billable_sessions == 0
    for offset in agent_offsets:
        s = s.on_message(Sender.AGENT, T0 + offset)
        assert s.billable_sessions == 0
        assert s.answered_at is None  # agent messages never answer
    assert s.end(T0 + 30 * DAY).billable_sessions == 0


@fast
@given(before=st.lists(durations, max_size=5), reply=durations)
def test_after_first_reply_units_count_from_the_start(before, reply):
    s = open_session(Direction.OUTBOUND, answered_only=True)
    for offset in before:
        s = s.on_message(Sender.AGENT, T0 + offset)
    s = s.on_message(Sender.CUSTOMER, T0 + reply)
    assert s.answered_at == T0 + reply
    last = max([reply, *before])
    assert s.billable_sessions == expected_units(last)  # from the start, not from the reply
    assert s.billable_sessions >= 1


def test_late_reply_counts_every_window_from_the_start():
    s = open_session(Direction.OUTBOUND, answered_only=True)
    s = s.on_message(Sender.AGENT, T0 + H)
    s = s.on_message(Sender.CUSTOMER, T0 + timedelta(hours=50))
    assert s.billable_sessions == 3


def test_first_reply_is_kept_when_the_customer_writes_again():
    s = open_session(Direction.OUTBOUND, answered_only=True)
    s = s.on_message(Sender.CUSTOMER, T0 + H)
    s = s.on_message(Sender.CUSTOMER, T0 + 3 * H)
    assert s.answered_at == T0 + H


@fast
@given(msgs=messages)
def test_inbound_always_counts_on_answered_only(msgs):
    s = open_session(Direction.INBOUND, answered_only=True)
    assert s.billable_sessions == 1
    for sender, offset in msgs:
        s = s.on_message(sender, T0 + offset)
        assert s.billable_sessions >= 1


@fast
@given(agent_offsets=st.lists(durations, max_size=5))
def test_without_the_tag_outbound_counts_from_the_start(agent_offsets):
    s = open_session(Direction.OUTBOUND, answered_only=False)
    assert s.billable_sessions == 1
    for offset in agent_offsets:
        s = s.on_message(Sender.AGENT, T0 + offset)
    assert s.billable_sessions == expected_units(max([timedelta(0), *agent_offsets]))


@pytest.mark.parametrize(
    ("direction", "answered_only", "units"),
    [
        (Direction.INBOUND, False, 1),
        (Direction.INBOUND, True, 1),
        (Direction.OUTBOUND, False, 1),
        (Direction.OUTBOUND, True, 0),
    ],
)
def test_opening_units(direction, answered_only, units):
    s = open_session(direction, answered_only=answered_only)
    assert s.opening_units == units
    assert s.billable_sessions == units


@fast
@given(
    direction=st.sampled_from(list(Direction)),
    answered_only=st.booleans(),
    answered=st.booleans(),
    elapsed=durations,
)
def test_counted_units(direction, answered_only, answered, elapsed):
    got = counted_units(
        start=T0, last_activity=T0 + elapsed, direction=direction, answered_only=answered_only, answered=answered
    )
    if answered_only and direction is Direction.OUTBOUND and not answered:
        assert got == 0
    else:
        assert got == expected_units(elapsed)


def test_direction_and_sender_values_match_the_api():
    assert {d.value for d in Direction} == {"inbound", "outbound"}
    assert {s.value for s in Sender} == {"customer", "agent"}
