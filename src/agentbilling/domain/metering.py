"""Billable sessions of a session (R1) and the Answered only rule (R2)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from agentbilling.domain.errors import SessionEnded

WINDOW = timedelta(hours=24)


class Direction(StrEnum):
    INBOUND = "inbound"  # the customer started it
    OUTBOUND = "outbound"  # the agent started it


class Sender(StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"


def billable_units(start: datetime, last_activity: datetime) -> int:
    """One unit per fixed 24-hour window from the start up to the window of the latest activity."""
    if last_activity < start:
        return 1
    return (last_activity - start) // WINDOW + 1


def counted_units(
    *,
    start: datetime,
    last_activity: datetime,
    direction: Direction,
    answered_only: bool,
    answered: bool,
) -> int:
    """Units a session counts now: 0 for an unanswered outbound session on Answered only."""
    if answered_only and direction is Direction.OUTBOUND and not answered:
        return 0
    return billable_units(start, last_activity)


@dataclass(frozen=True, slots=True)
class Session:
    """A conversation as billing sees it: when it started, its latest activity, its units."""

    id: str
    agent_id: str
    direction: Direction
    answered_only: bool  # the rule of the plan it started under (R2)
    started_at: datetime
    last_activity_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    billable_sessions: int

    @classmethod
    def open(cls, *, id: str, agent_id: str, direction: Direction, answered_only: bool, now: datetime) -> Session:
        units = counted_units(
            start=now, last_activity=now, direction=direction, answered_only=answered_only, answered=False
        )
        return cls(id, agent_id, direction, answered_only, now, now, None, None, units)

    @property
    def opening_units(self) -> int:
        """The units counted when it was admitted: 0 for outbound on Answered only, else 1."""
        return 0 if self.answered_only and self.direction is Direction.OUTBOUND else 1

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def on_message(self, sender: Sender, now: datetime) -> Session:
        if self.ended:
            raise SessionEnded(f"Session {self.id} has ended; it takes no more messages.")
        last = max(self.last_activity_at, now)
        answered_at = self.answered_at
        if answered_at is None and sender is Sender.CUSTOMER:
            answered_at = now
        units = counted_units(
            start=self.started_at,
            last_activity=last,
            direction=self.direction,
            answered_only=self.answered_only,
            answered=answered_at is not None,
        )
        # Units once counted are never taken back.
        return replace(
            self, last_activity_at=last, answered_at=answered_at, billable_sessions=max(units, self.billable_sessions)
        )

    def end(self, now: datetime) -> Session:
        return self if self.ended else replace(self, ended_at=now)
