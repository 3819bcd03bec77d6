"""The test clock kept in the database, so that every process, workers included, follows one time
(`ClockFollower`), within FOLLOW_INTERVAL of an advance."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from agentbilling.clock import TestClock
from agentbilling.domain.errors import Conflict, InvalidInput
from agentbilling.storage.db import Database
from agentbilling.storage.tables import test_clock

FOLLOW_INTERVAL = 0.5  # seconds between two reads of the kept time, per process

log = logging.getLogger(__name__)


def catch_up(db: Database, clock: TestClock) -> datetime:
    """Move this process's clock to the time kept in the database, if that is later (one
    indexed read of one row)."""
    with db.read() as conn:
        saved = conn.execute(select(test_clock.c.now).where(test_clock.c.id == 1)).scalar_one_or_none()
    if saved is not None and saved > clock.now():
        return clock.set(saved)
    return clock.now()


class ClockFollower:
    """Keeps a process's test clock at the time kept in the database, read every FOLLOW_INTERVAL
    seconds on a thread of its own (the gate's hot path reads only the clock in memory)."""

    def __init__(self, db: Database, clock: TestClock, interval: float = FOLLOW_INTERVAL) -> None:
        self.db, self.clock, self.interval = db, clock, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-clock-follower", daemon=True)

    def start(self) -> ClockFollower:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                catch_up(self.db, self.clock)
            except Exception as exc:  # a database away for a moment: the next read catches up
                log.debug("test clock: could not read the kept time: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


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
        row = conn.execute(select(test_clock.c.now).where(test_clock.c.id == 1).with_for_update()).scalar_one_or_none()
        if row is None:
            conn.execute(insert(test_clock).values(id=1, now=moment))
        elif row < moment:  # never back: another process may have moved it further meanwhile
            conn.execute(update(test_clock).where(test_clock.c.id == 1).values(now=moment))
        else:
            moment = row
        return clock.set(max(moment, clock.now()))


def advance(db: Database, clock: TestClock, *, seconds: float | None = None, to: datetime | None = None,
            run_due: Callable[[datetime], None] | None = None,
            next_due: Callable[[datetime], datetime | None] | None = None) -> datetime:
    """Move the test clock, stopping at every moment something comes due on the way, to apply it
    there (period by period, as Stripe's test clocks do); returns once all of it is applied."""
    catch_up(db, clock)  # from the time every process shares, not this one's last reading
    end = target(clock, seconds=seconds, to=to)
    if run_due is not None and next_due is not None:
        while (moment := next_due(clock.now())) is not None and moment <= end:
            move(db, clock, moment)
            run_due(moment)
    now = move(db, clock, end)
    if run_due is not None:
        run_due(now)
    return now
