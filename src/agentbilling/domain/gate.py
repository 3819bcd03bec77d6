"""The admission gate (R4): whether agents may start a new session now, and why not."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, NamedTuple

from agentbilling.domain.errors import DomainError, SessionIdReused
from agentbilling.domain.metering import Direction, Session

if TYPE_CHECKING:
    from agentbilling.domain.subscription import Standing


class Refusal(Enum):
    """A closed gate's reason: the problem `type` suffix and the exact message users see."""

    SUBSCRIPTION_ENDED = (
        "subscription-ended",
        "Your subscription has ended. Please upgrade your plan to continue.",
    )
    PAYMENT_OVERDUE = (
        "payment-overdue",
        "Your payment is overdue and the grace period has expired.",
    )
    SESSION_LIMIT_REACHED = ("session-limit-reached", "Session limit has been reached")

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message


def refusal(*, closed: Refusal | None, cap: int | None, cap_refusal: Refusal, used: int) -> Refusal | None:
    """Closed outright, or closed because the counter reached its cap; None when open."""
    if closed is not None:
        return closed
    if cap is not None and used >= cap:
        return cap_refusal
    return None


class AdmissionRequest(NamedTuple):
    """One request to open a session, its fields already validated."""

    session_id: str
    agent_id: str
    direction: Direction


@dataclass(frozen=True, slots=True)
class OpenResult:
    """An admission's answer: the session (admitted, or the first answer again for a replay), or a refusal."""

    session: Session | None
    replay: bool = False
    refusal: Refusal | None = None


def replay_of(first: Session, agent_id: str, direction: Direction) -> OpenResult | SessionIdReused:
    """The same id again: the first answer, or an error if it came with another agent or direction."""
    if first.agent_id != agent_id or first.direction is not direction:
        return SessionIdReused(f"Session {first.id!r} was opened with another agent or direction.")
    return OpenResult(first, replay=True)


def open_session(st: Standing, request: AdmissionRequest, now: datetime) -> Session:
    """The session a request opens under the standing's Answered only rule (R2)."""
    return Session.open(id=request.session_id, agent_id=request.agent_id, direction=request.direction,
                        answered_only=st.answered_only, now=now)


def uncounted_refusal(st: Standing, used: int) -> Refusal | None:
    """An admission that counts nothing when it opens (outbound, Answered only) is admitted while
    the count so far is below the limit; it is counted when answered."""
    return st.refusal(used)


def all_new_and_counted(st: Standing, requests: Sequence[AdmissionRequest], now: datetime) -> list[Session] | None:
    """The sessions of a batch that may be admitted all at once by a count under the cap alone: the
    gate is not closed, no id repeats within the batch and each counts one unit when it opens.
    None: the batch must be decided request by request (`decide_in_order`)."""
    if st.closed is not None:
        return None
    sessions = [open_session(st, r, now) for r in requests]
    ids = [s.id for s in sessions]
    if len(set(ids)) != len(ids) or any(s.billable_sessions != 1 for s in sessions):
        return None
    return sessions


@dataclass(frozen=True, slots=True)
class Decided:
    """A batch decided in order: each request's answer, the sessions to record, the new count."""

    results: list[OpenResult | DomainError | None]
    admitted: list[Session]  # to record, in order
    count: int | None  # the counter's new value; None: unchanged


def decide_in_order(
    st: Standing, requests: Sequence[AdmissionRequest], known: list[Session], used: int, now: datetime
) -> Decided:
    """The answers one admission after another would give, from the counter's value and the
    sessions of the batch's ids that exist: a known id is a replay (or a reused id), then the gate
    decides on the count so far."""
    by_id = {s.id: s for s in known}
    results: list[OpenResult | DomainError | None] = []
    admitted: list[Session] = []
    before = used
    for r in requests:
        first = by_id.get(r.session_id)
        if first is not None:
            results.append(replay_of(first, r.agent_id, r.direction))
            continue
        reason = st.refusal(used)
        if reason is not None:
            results.append(OpenResult(None, refusal=reason))
            continue
        session = open_session(st, r, now)
        used += session.billable_sessions
        by_id[session.id] = session
        admitted.append(session)
        results.append(OpenResult(session))
    return Decided(results, admitted, used if used != before else None)
