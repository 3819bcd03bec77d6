"""Monthly billing periods, always counted from the anchor."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentbilling.domain.periods import Period, add_months, period_at
from tests.support.domain import US, fast, moments


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- add_months ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("anchor", "months", "expected"),
    [
        (utc(2026, 1, 31, 9), 1, utc(2026, 2, 28, 9)),
        (utc(2026, 1, 31, 9), 2, utc(2026, 3, 31, 9)),  # back to the 31st: no drift
        (utc(2026, 1, 31, 9), 3, utc(2026, 4, 30, 9)),
        (utc(2024, 1, 31, 9), 1, utc(2024, 2, 29, 9)),  # leap year
        (utc(2024, 2, 29), 12, utc(2025, 2, 28)),
        (utc(2024, 2, 29), 48, utc(2028, 2, 29)),
        (utc(2026, 12, 15), 1, utc(2027, 1, 15)),  # year roll-over
        (utc(2026, 11, 30), 3, utc(2027, 2, 28)),
        (utc(2026, 3, 31), -1, utc(2026, 2, 28)),
        (utc(2026, 1, 15), -1, utc(2025, 12, 15)),
        (utc(2026, 5, 17, 13, 45, 7, 123), 0, utc(2026, 5, 17, 13, 45, 7, 123)),
        (utc(2026, 1, 31), 25, utc(2028, 2, 29)),
    ],
)
def test_add_months_examples(anchor, months, expected):
    assert add_months(anchor, months) == expected


def test_jan_31_anchor_walks_feb_28_then_mar_31():
    anchor = utc(2026, 1, 31, 9)
    assert [add_months(anchor, k).date().isoformat() for k in range(4)] == [
        "2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30",
    ]
    # Chaining one month at a time would drift to the 28th; counting from the anchor does not.
    assert add_months(add_months(anchor, 1), 1).day == 28
    assert add_months(anchor, 2).day == 31


@fast
@given(anchor=moments, months=st.integers(-240, 240))
def test_add_months_keeps_the_anchor_day_clamped_and_the_time(anchor, months):
    moved = add_months(anchor, months)
    total = anchor.year * 12 + (anchor.month - 1) + months
    assert (moved.year, moved.month - 1) == divmod(total, 12)
    assert moved.day == min(anchor.day, calendar.monthrange(moved.year, moved.month)[1])
    assert moved.timetz() == anchor.timetz()
    assert moved.tzinfo is anchor.tzinfo


@fast
@given(anchor=moments, months=st.integers(0, 240))
def test_add_months_is_strictly_increasing(anchor, months):
    assert add_months(anchor, months) < add_months(anchor, months + 1)


# --- period_at -------------------------------------------------------------------------------


@fast
@given(anchor=moments, now=moments)
def test_period_at_contains_now_and_is_counted_from_the_anchor(anchor, now):
    p = period_at(anchor, now)
    assert p.index >= 0
    assert p.start == add_months(anchor, p.index)
    assert p.end == add_months(anchor, p.index + 1)
    if now >= anchor:
        assert p.start <= now < p.end
        assert p.contains(now)
    else:
        assert p == Period(anchor, add_months(anchor, 1), 0)


@fast
@given(anchor=moments, now=moments)
def test_periods_tile_time_without_gaps_or_overlaps(anchor, now):
    p = period_at(anchor, max(now, anchor))
    nxt = period_at(anchor, p.end)
    assert nxt.start == p.end  # no gap, no overlap
    assert nxt.index == p.index + 1
    assert period_at(anchor, p.end - US) == p  # the last instant still belongs to p
    assert period_at(anchor, p.start) == p
    if p.index > 0:
        prev = period_at(anchor, p.start - US)
        assert prev.end == p.start and prev.index == p.index - 1


@fast
@given(anchor=moments, a=moments, b=moments)
def test_period_index_is_monotone_in_now(anchor, a, b):
    lo, hi = sorted((a, b))
    assert period_at(anchor, lo).index <= period_at(anchor, hi).index


def test_a_walk_through_consecutive_periods_has_consecutive_indexes():
    anchor = utc(2024, 1, 31, 23, 30)
    now = anchor
    seen = []
    while now < utc(2026, 1, 1):
        p = period_at(anchor, now)
        seen.append(p)
        now = p.end
    assert [p.index for p in seen] == list(range(len(seen)))
    assert all(a.end == b.start for a, b in zip(seen, seen[1:], strict=False))
    assert seen[1].start == utc(2024, 2, 29, 23, 30)  # leap February
    assert seen[13].start == utc(2025, 2, 28, 23, 30)
    assert seen[2].start == utc(2024, 3, 31, 23, 30)


def test_leap_day_anchor():
    anchor = utc(2024, 2, 29, 12)
    p = period_at(anchor, utc(2025, 3, 1))
    assert (p.start, p.end, p.index) == (utc(2025, 2, 28, 12), utc(2025, 3, 29, 12), 12)
    p = period_at(anchor, utc(2028, 2, 29, 12))
    assert (p.start, p.index) == (utc(2028, 2, 29, 12), 48)


def test_period_boundaries_are_start_inclusive_end_exclusive():
    anchor = utc(2026, 1, 31, 9)
    first = period_at(anchor, anchor)
    assert first == Period(anchor, utc(2026, 2, 28, 9), 0)
    assert period_at(anchor, utc(2026, 2, 28, 9) - timedelta(microseconds=1)).index == 0
    second = period_at(anchor, utc(2026, 2, 28, 9))
    assert second == Period(utc(2026, 2, 28, 9), utc(2026, 3, 31, 9), 1)
    assert not first.contains(first.end)
    assert first.contains(first.start)


def test_before_the_anchor_is_the_first_period():
    anchor = utc(2026, 1, 31, 9)
    assert period_at(anchor, utc(2025, 6, 1)).index == 0


def test_period_key_is_its_start_to_the_microsecond_in_utc():
    anchor = utc(2026, 1, 31, 9, 0, 0, 5)
    assert period_at(anchor, anchor).key == "2026-01-31T09:00:00.000005Z"
    assert period_at(anchor, utc(2026, 3, 1)).key == "2026-02-28T09:00:00.000005Z"


@fast
@given(anchor=moments, now=moments)
def test_consecutive_periods_have_distinct_keys(anchor, now):
    p = period_at(anchor, max(now, anchor))
    nxt = period_at(anchor, p.end)
    assert p.key != nxt.key
    assert datetime.strptime(p.key, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) == p.start
