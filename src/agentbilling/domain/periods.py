"""Monthly billing periods, always counted from the anchor (Jan 31 -> Feb 28/29 -> Mar 31)."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime


def add_months(anchor: datetime, months: int) -> datetime:
    """The anchor moved by whole months, the day clamped to the target month's length."""
    year, month0 = divmod(anchor.month - 1 + months, 12)
    year += anchor.year
    day = min(anchor.day, calendar.monthrange(year, month0 + 1)[1])
    return anchor.replace(year=year, month=month0 + 1, day=day)


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime  # exclusive
    index: int  # 0 for the period that starts at the anchor

    @property
    def key(self) -> str:
        """The period's name in the usage counters: its start, to the microsecond, in UTC."""
        return self.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def period_at(anchor: datetime, now: datetime) -> Period:
    """The monthly period that contains `now` (the first one if `now` precedes the anchor)."""
    if now < anchor:
        return Period(anchor, add_months(anchor, 1), 0)
    k = (now.year - anchor.year) * 12 + (now.month - anchor.month)
    while k > 0 and add_months(anchor, k) > now:
        k -= 1
    while add_months(anchor, k + 1) <= now:
        k += 1
    return Period(add_months(anchor, k), add_months(anchor, k + 1), k)
