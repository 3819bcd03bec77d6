"""A tenant's subscription: the lifecycle as one transition table, and its standing at `now`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from agentbilling.domain import gate
from agentbilling.domain.errors import Conflict
from agentbilling.domain.gate import Refusal
from agentbilling.domain.limits import effective_limit
from agentbilling.domain.periods import Period, period_at
from agentbilling.domain.plans import Plan
from agentbilling.domain.trial import Trial


TRIAL_COUNTER = "trial"  # a tenant has one trial, ever (R6), so one trial counter


class Status(StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"
    EXPIRED = "expired"


class Event(StrEnum):
    TRIAL_RAN_OUT = "trial_ran_out"  # out of days or sessions
    PLAN_STARTED = "plan_started"  # a paid plan starts, from the trial, an ended plan or another plan


# Every lifecycle change there is. A pair not listed is not allowed.
TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (Status.TRIALING, Event.TRIAL_RAN_OUT): Status.EXPIRED,
    (Status.TRIALING, Event.PLAN_STARTED): Status.ACTIVE,
    (Status.ACTIVE, Event.PLAN_STARTED): Status.ACTIVE,
    (Status.EXPIRED, Event.PLAN_STARTED): Status.ACTIVE,
}


def transition(status: Status, event: Event) -> Status:
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise Conflict(f"A {status.value} subscription cannot take the event {event.value}.") from None


@dataclass(frozen=True, slots=True)
class Subscription:
    """What is stored; time-based changes are derived from it by `standing`."""

    tenant_id: str
    status: Status
    trial: Trial
    plan: Plan | None = None  # the paid plan, with any negotiated terms applied
    anchor: datetime | None = None  # the paid plan's first period start
    custom_limit: int | None = None  # the tenant's own session limit


@dataclass(frozen=True, slots=True)
class Standing:
    """The subscription as it stands at one moment, before usage is known."""

    status: Status
    counter: str  # the usage counter that units recognised now count in: "trial" or the period's key
    period: Period | None  # the paid period; None on the trial
    closed: Refusal | None  # closed whatever the usage
    cap: int | None  # admissions stop when the counter reaches it; None: no cap
    cap_refusal: Refusal
    answered_only: bool
    trial: Trial | None

    def refusal(self, used: int) -> Refusal | None:
        return gate.refusal(closed=self.closed, cap=self.cap, cap_refusal=self.cap_refusal, used=used)

    def status_with(self, used: int) -> Status:
        """The status once usage is known: a trial out of sessions has expired."""
        if self.status is Status.TRIALING and self.trial is not None and self.trial.out_of_sessions(used):
            return Status.EXPIRED
        return self.status


def standing(sub: Subscription, now: datetime, *, billing_enabled: bool = True) -> Standing:
    if sub.status is Status.TRIALING:
        trial = sub.trial
        status = Status.EXPIRED if trial.out_of_days(now) else Status.TRIALING
        result = Standing(
            status=status,
            counter=TRIAL_COUNTER,
            period=None,
            closed=Refusal.SUBSCRIPTION_ENDED if status is Status.EXPIRED else None,
            cap=trial.sessions,
            cap_refusal=Refusal.SUBSCRIPTION_ENDED,
            answered_only=False,
            trial=trial,
        )
    else:
        assert sub.plan is not None and sub.anchor is not None, "a paid subscription has a plan"
        period = period_at(sub.anchor, now)
        result = Standing(
            status=sub.status,
            counter=period.key,
            period=period,
            closed=Refusal.SUBSCRIPTION_ENDED if sub.status is Status.EXPIRED else None,
            cap=effective_limit(sub.plan, sub.custom_limit),
            cap_refusal=Refusal.SESSION_LIMIT_REACHED,
            answered_only=sub.plan.answered_only,
            trial=None,
        )
    if not billing_enabled:
        # The deployment bills elsewhere: count, but never close the gate.
        return dataclasses.replace(result, closed=None, cap=None)
    return result
