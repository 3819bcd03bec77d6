"""The test clock's persistence: it keeps its time in the database across restarts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from agentbilling.clock import TestClock
from agentbilling.domain.errors import Conflict, InvalidInput
from agentbilling.storage.db import Database
from agentbilling.storage.tables import test_clock


def load_test_clock(db: Database, start: datetime) -> TestClock:
    with db.write() as conn:
        saved = conn.execute(select(test_clock.c.now).where(test_clock.c.id == 1)).scalar_one_or_none()
        if saved is None:
            conn.execute(insert(test_clock).values(id=1, now=start))
            saved = start
    return TestClock(saved)


def target(clock: TestClock, *, seconds: float | None = None, to: datetime | None = None) -> datetime:
    """Where an advance goes: `seconds` ahead, or `to`; never back."""
    if (seconds is None) == (to is None):
        raise InvalidInput("Give either seconds or to.")
    if seconds is not None:
        if seconds < 0:
            raise Conflict("Time only moves forward.")
        try:
            return clock.now() + timedelta(seconds=seconds)
        except OverflowError:
            raise InvalidInput("seconds takes the clock past the year 9999.") from None
    assert to is not None
    if to.tzinfo is None:
        raise InvalidInput("`to` needs a time zone, e.g. 2026-01-31T00:00:00Z.")
    if to.year >= 9000:
        raise InvalidInput("`to` is too far ahead; the test clock stops before the year 9000.")
    if to < clock.now():
        raise Conflict("Time only moves forward: `to` is in the test clock's past.")
    return to


def move(db: Database, clock: TestClock, moment: datetime) -> datetime:
    """Set the test clock (kept in the database, so a restart keeps it)."""
    with db.write() as conn:
        if conn.execute(update(test_clock).where(test_clock.c.id == 1).values(now=moment)).rowcount == 0:
            conn.execute(insert(test_clock).values(id=1, now=moment))
        return clock.set(moment)


def advance(db: Database, clock: TestClock, *, seconds: float | None = None, to: datetime | None = None,
            run_due: Callable[[datetime], None] | None = None,
            next_due: Callable[[datetime], datetime | None] | None = None) -> datetime:
    """Move the test clock, stopping at every moment something comes due on the way, to apply it
    there (period by period, as Stripe's test clocks do); returns once all of it is applied."""
    end = target(clock, seconds=seconds, to=to)
    if run_due is not None and next_due is not None:
        while (moment := next_due(clock.now())) is not None and moment <= end:
            move(db, clock, moment)
            run_due(moment)
    now = move(db, clock, end)
    if run_due is not None:
        run_due(now)
    return now
