"""Clocks: the system clock, and a test clock that stands still until advanced."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class TestClock:
    """Business time for tests and demos; moves only forward, only when told."""

    __test__ = False  # not a pytest class

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the test clock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._now

    def set(self, to: datetime) -> datetime:
        with self._lock:
            if to < self._now:
                raise ValueError("time only moves forward")
            self._now = to.astimezone(UTC)
            return self._now
