"""Calendar arithmetic for billing periods (anchored months, clamped to month length) and proration."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

DAY = 86400


def add_months(anchor: int, months: int) -> int:
    """`anchor` moved by whole months, keeping its day (clamped: Jan 31 + 1 month = Feb 28/29) and time."""
    dt = datetime.fromtimestamp(anchor, UTC)
    year, month0 = divmod(dt.month - 1 + months, 12)
    year += dt.year
    day = min(dt.day, calendar.monthrange(year, month0 + 1)[1])
    return int(dt.replace(year=year, month=month0 + 1, day=day).timestamp())


def add_interval(anchor: int, interval: str, count: int) -> int:
    """`anchor` moved by `count` Stripe recurring intervals (day, week, month, year)."""
    if interval == "month":
        return add_months(anchor, count)
    if interval == "year":
        return add_months(anchor, 12 * count)
    if interval == "week":
        return anchor + count * 7 * DAY
    if interval == "day":
        return anchor + count * DAY
    raise ValueError(f"unknown interval {interval!r}")


def period_bounds(anchor: int, interval: str, count: int, index: int) -> tuple[int, int]:
    """The `index`-th period from the billing cycle anchor (always from the anchor, so no drift)."""
    return add_interval(anchor, interval, count * index), add_interval(anchor, interval, count * (index + 1))


def prorate(amount: int, period_start: int, period_end: int, now: int) -> int:
    """The share of `amount` for the rest of the period after `now`, rounded to the cent."""
    length = period_end - period_start
    if length <= 0:
        return 0
    remaining = min(max(period_end - now, 0), length)
    return round(amount * remaining / length)


def human_date(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%d %b %Y")


def to_timestamp(value: float | datetime) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp())
    return int(value)


