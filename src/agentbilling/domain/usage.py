"""Billable sessions per day of a billing period, for the Billing tab's usage chart."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from agentbilling.domain.metering import WINDOW, Direction, Session
from agentbilling.domain.subscription import Standing

# A session older than this that is still running has its later windows left off the chart (the
# counters, not the chart, are what the plan counts).
LOOKBACK = timedelta(days=31)


@dataclass(frozen=True, slots=True)
class DayUsage:
    day: date  # a UTC day, as periods are anchored in UTC
    billable_sessions: int


def window_starts(s: Session) -> list[datetime]:
    """When each billable session of `s` became countable: its 24-hour window's start, or, for an
    outbound session on Answered only, not before the customer's first reply (R1, R2)."""
    waits_for_reply = s.answered_only and s.direction is Direction.OUTBOUND
    floor = s.answered_at if waits_for_reply and s.answered_at is not None else s.started_at
    return [max(s.started_at + k * WINDOW, floor) for k in range(s.billable_sessions)]


def units_by_day(sessions: Iterable[Session], since: datetime, until: datetime,
                 end: datetime | None = None) -> list[DayUsage]:
    """Every UTC day of [since, until], each with the billable sessions whose window began on it,
    then the days left before `end` (the period's end, exclusive), at 0.

    A unit is counted from the moment it became countable, a lower bound of when it was recorded;
    so a window that began before `since` is left off even if its first message came after it.
    """
    first, last = since.astimezone(UTC).date(), until.astimezone(UTC).date()
    if end is not None and end > until:
        last = (end - timedelta(microseconds=1)).astimezone(UTC).date()
    counts = {first + timedelta(days=i): 0 for i in range((last - first).days + 1)}
    for s in sessions:
        for moment in window_starts(s):
            if since <= moment <= until:
                counts[moment.astimezone(UTC).date()] += 1
    return [DayUsage(day, n) for day, n in counts.items()]


def chart_window(st: Standing, now: datetime) -> tuple[datetime, datetime, datetime]:
    """What the Sessions count covers, the paid period or the trial: its start, `now` (or its end
    if that came first), and its end."""
    if st.period is not None:
        start, end = st.period.start, st.period.end
    else:
        assert st.trial is not None
        start, end = st.trial.started_at, st.trial.ends_at
    return start, min(now, end), end
