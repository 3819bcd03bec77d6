"""R5: the free trial, bounded by days and sessions, ending at the first of the two."""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentbilling.domain.trial import Trial
from tests.support.domain import DAY, T0, US, fast

DAY_US = 86400 * 10**6
S = timedelta(seconds=1)

trials = st.builds(
    lambda days, sessions: Trial.start(T0, days=days, sessions=sessions),
    days=st.integers(1, 60),
    sessions=st.integers(1, 500),
)
offsets = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=90))
usage = st.integers(0, 1000)


def micros(d: timedelta) -> int:
    return (d.days * 86400 + d.seconds) * 10**6 + d.microseconds


def test_default_trial_is_14_days_and_50_sessions_from_now():
    t = Trial.start(T0, days=14, sessions=50)
    assert t.started_at == T0
    assert t.ends_at == T0 + 14 * DAY
    assert t.sessions == 50
    assert t.days_left(T0) == 14
    assert t.sessions_left(0) == 50


@pytest.mark.parametrize(
    ("remaining", "days"),
    [
        (7 * DAY, 7),  # exactly 7 days reads 7
        (6 * DAY + S, 7),  # 6 days 1 second reads 7
        (6 * DAY + US, 7),
        (6 * DAY, 6),
        (7 * DAY + US, 8),
        (US, 1),
        (timedelta(0), 0),  # at the end
        (-S, 0),  # after the end
        (-30 * DAY, 0),
    ],
)
def test_days_left_rounds_up(remaining, days):
    t = Trial.start(T0, days=14, sessions=50)
    assert t.days_left(t.ends_at - remaining) == days


@fast
@given(trial=trials, elapsed=offsets)
def test_days_left_is_the_ceiling_of_the_remaining_days(trial, elapsed):
    now = T0 + elapsed
    remaining = micros(trial.ends_at - now)
    expected = max(0, -(-remaining // DAY_US))
    assert trial.days_left(now) == expected


@fast
@given(trial=trials, a=offsets, b=offsets)
def test_days_left_never_increases_as_time_passes(trial, a, b):
    lo, hi = sorted((a, b))
    assert trial.days_left(T0 + lo) >= trial.days_left(T0 + hi) >= 0


@fast
@given(trial=trials, used=usage)
def test_sessions_left_is_never_below_zero(trial, used):
    left = trial.sessions_left(used)
    assert left >= 0
    assert left == max(0, trial.sessions - used)


def test_sessions_left_with_usage_past_the_trial():
    t = Trial.start(T0, days=14, sessions=50)
    assert t.sessions_left(49) == 1
    assert t.sessions_left(50) == 0
    assert t.sessions_left(57) == 0  # running sessions pushed usage past 50


@fast
@given(trial=trials, elapsed=offsets, used=usage)
def test_is_over_at_the_first_of_days_or_sessions(trial, elapsed, used):
    now = T0 + elapsed
    assert trial.out_of_days(now) == (now >= trial.ends_at)
    assert trial.out_of_sessions(used) == (used >= trial.sessions)
    assert trial.is_over(now, used) == (now >= trial.ends_at or used >= trial.sessions)


def test_is_over_boundaries():
    t = Trial.start(T0, days=14, sessions=50)
    assert not t.is_over(t.ends_at - US, 49)
    assert t.is_over(t.ends_at, 0)  # out of days
    assert t.is_over(T0 + DAY, 50)  # out of sessions on day 2
    assert t.days_left(t.ends_at) == 0


@fast
@given(trial=trials, elapsed=offsets, used=usage)
def test_ending_soon_rule(trial, elapsed, used):
    now = T0 + elapsed
    over = trial.is_over(now, used)
    expected = not over and (
        trial.days_left(now) <= 7 or Fraction(used, trial.sessions) >= Fraction(9, 10)
    )
    assert trial.ending_soon(now, used) == expected
    if over:
        assert not trial.ending_soon(now, used)  # never when over


@pytest.mark.parametrize(
    ("remaining", "used", "soon"),
    [
        (7 * DAY + US, 0, False),  # 8 days left
        (7 * DAY, 0, True),  # exactly 7
        (6 * DAY + S, 0, True),
        (13 * DAY, 44, False),  # 88%
        (13 * DAY, 45, True),  # 90%
        (13 * DAY, 49, True),
        (13 * DAY, 50, False),  # over: expired, not ending soon
        (timedelta(0), 0, False),  # over by days
    ],
)
def test_ending_soon_examples(remaining, used, soon):
    t = Trial.start(T0, days=14, sessions=50)
    assert t.ending_soon(t.ends_at - remaining, used) is soon


def test_ending_soon_ninety_percent_with_sessions_not_divisible_by_ten():
    t = Trial.start(T0, days=30, sessions=14)  # 90% of 14 is 12.6
    assert not t.ending_soon(T0, 12)
    assert t.ending_soon(T0, 13)
