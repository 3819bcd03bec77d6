"""The free trial (R5): bounded by days and sessions, ending at the first of the two."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

DAY = timedelta(days=1)
ENDING_SOON_DAYS = 7


@dataclass(frozen=True, slots=True)
class Trial:
    started_at: datetime
    ends_at: datetime
    sessions: int

    @classmethod
    def start(cls, now: datetime, *, days: int, sessions: int) -> Trial:
        return cls(started_at=now, ends_at=now + timedelta(days=days), sessions=sessions)

    def days_left(self, now: datetime) -> int:
        """Whole days until the end, rounded up: exactly 7 days left reads 7."""
        remaining = self.ends_at - now
        if remaining <= timedelta(0):
            return 0
        whole, rest = divmod(remaining, DAY)
        return whole + (1 if rest else 0)

    def sessions_left(self, used: int) -> int:
        return max(0, self.sessions - used)

    def out_of_days(self, now: datetime) -> bool:
        return now >= self.ends_at

    def out_of_sessions(self, used: int) -> bool:
        return used >= self.sessions

    def is_over(self, now: datetime, used: int) -> bool:
        return self.out_of_days(now) or self.out_of_sessions(used)

    def ending_soon(self, now: datetime, used: int) -> bool:
        """Seven days or fewer left, or 90% of the sessions used."""
        if self.is_over(now, used):
            return False
        return self.days_left(now) <= ENDING_SOON_DAYS or used * 10 >= self.sessions * 9
