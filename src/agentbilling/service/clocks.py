"""The test clock's persistence: it keeps its time in the database across restarts."""

from __future__ import annotations

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


def advance(db: Database, clock: TestClock, *, seconds: float | None = None, to: datetime | None = None) -> datetime:
    if (seconds is None) == (to is None):
        raise InvalidInput("Give either seconds or to.")
    if seconds is not None:
        if seconds < 0:
            raise Conflict("Time only moves forward.")
        try:
            target = clock.now() + timedelta(seconds=seconds)
        except OverflowError:
            raise InvalidInput("seconds takes the clock past the year 9999.") from None
    else:
        assert to is not None
        if to.tzinfo is None:
            raise InvalidInput("`to` needs a time zone, e.g. 2026-01-31T00:00:00Z.")
        if to.year >= 9000:
            raise InvalidInput("`to` is too far ahead; the test clock stops before the year 9000.")
        if to < clock.now():
            raise Conflict("Time only moves forward: `to` is in the test clock's past.")
        target = to
    with db.write() as conn:
        if conn.execute(update(test_clock).where(test_clock.c.id == 1).values(now=target)).rowcount == 0:
            conn.execute(insert(test_clock).values(id=1, now=target))
        return clock.set(target)
