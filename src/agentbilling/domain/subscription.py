"""A tenant's subscription: the lifecycle as one transition table, the changes time makes to it,
and its standing at `now`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from agentbilling.domain import gate
from agentbilling.domain.errors import Conflict
from agentbilling.domain.gate import Refusal
from agentbilling.domain.limits import effective_limit, kept_limit
from agentbilling.domain.periods import Period, period_at
from agentbilling.domain.plan_change import PlanChange
from agentbilling.domain.plans import Plan
from agentbilling.domain.trial import Trial

TRIAL_COUNTER = "trial"  # a tenant has one trial, ever (R6), so one trial counter


class Status(StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"  # a paid plan running: paid, or in a payment issue, or cancelled for its period's end
    EXPIRED = "expired"  # the trial ran out, or a paid plan ended unpaid (R10)
    CANCELED = "canceled"  # a paid plan ended by its cancellation (R11)


class Event(StrEnum):
    TRIAL_RAN_OUT = "trial_ran_out"  # out of days or sessions
    PLAN_STARTED = "plan_started"  # a paid plan starts, from the trial, an ended plan or another plan
    CANCELLATION_ENDED = "cancellation_ended"  # the period of a cancelled plan ended
    LAPSED = "lapsed"  # the period of an unpaid invoice ended unpaid


# Every lifecycle change there is. A pair not listed is not allowed.
TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (Status.TRIALING, Event.TRIAL_RAN_OUT): Status.EXPIRED,
    (Status.TRIALING, Event.PLAN_STARTED): Status.ACTIVE,
    (Status.ACTIVE, Event.PLAN_STARTED): Status.ACTIVE,
    (Status.EXPIRED, Event.PLAN_STARTED): Status.ACTIVE,
    (Status.CANCELED, Event.PLAN_STARTED): Status.ACTIVE,
    (Status.ACTIVE, Event.CANCELLATION_ENDED): Status.CANCELED,
    (Status.ACTIVE, Event.LAPSED): Status.EXPIRED,
}


def transition(status: Status, event: Event) -> Status:
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise Conflict(f"A {status.value} subscription cannot take the event {event.value}.") from None


class Payment(StrEnum):
    """A paid plan's failed payment (R10): in its grace period, or past it."""

    PENDING = "pending"
    OVERDUE = "overdue"


@dataclass(frozen=True, slots=True)
class Subscription:
    """What is stored; time-based changes are derived from it by `at` and `standing`."""

    tenant_id: str
    status: Status
    trial: Trial
    plan: Plan | None = None  # the paid plan, with any negotiated terms applied
    anchor: datetime | None = None  # the paid plan's first period start
    custom_limit: int | None = None  # the tenant's own session limit
    pending: PlanChange | None = None  # a scheduled plan change (R8), at most one
    cancel_at: datetime | None = None  # cancelled: the plan ends then, its period's end (R11)
    payment_failed_at: datetime | None = None  # the first failed charge of the oldest unpaid invoice
    grace_ends_at: datetime | None = None
    ended_at: datetime | None = None  # when a paid plan ended (cancelled or unpaid)
    offline: bool = False  # put on its plan by the operator, invoiced outside the provider

    @property
    def paid(self) -> bool:
        return self.plan is not None and self.status is not Status.TRIALING

    def period(self, now: datetime) -> Period:
        assert self.anchor is not None, "a paid subscription has an anchor"
        return period_at(self.anchor, now)

    def lapses_at(self) -> datetime | None:
        """An unpaid plan ends with the period its first failed payment fell in (R10)."""
        if self.payment_failed_at is None or self.anchor is None:
            return None
        return period_at(self.anchor, self.payment_failed_at).end

    def payment(self, now: datetime) -> Payment | None:
        if self.status is not Status.ACTIVE or self.payment_failed_at is None:
            return None
        if self.grace_ends_at is not None and now >= self.grace_ends_at:
            return Payment.OVERDUE
        return Payment.PENDING

    def changes_after(self, now: datetime) -> list[datetime]:
        """The moments after `now` at which something time-based happens to this subscription."""
        if self.status is Status.TRIALING:
            return [self.trial.ends_at] if self.trial.ends_at > now else []
        if self.status is not Status.ACTIVE:
            return []
        moments = [self.period(now).end]
        for m in (self.pending.effective_at if self.pending else None, self.cancel_at, self.grace_ends_at,
                  self.lapses_at()):
            if m is not None and m > now:
                moments.append(m)
        return moments


def with_change_applied(sub: Subscription) -> Subscription:
    """The pending change in force: the new plan, the tenant's own limit kept (lowered to the new
    plan's highest if above it), limits recalculated (R8). The period goes on."""
    assert sub.pending is not None
    plan = sub.pending.plan
    return dataclasses.replace(sub, plan=plan, pending=None, custom_limit=kept_limit(sub.custom_limit, plan))


def at(sub: Subscription, now: datetime) -> Subscription:
    """The subscription as it stands at `now`: the time-based changes due by then, in time order.

    A scheduled plan change that came due is in force, a cancellation whose period ended has ended the
    plan, a plan still unpaid when its period ended has expired: so the gate is right at every moment,
    whether or not a background job has written those changes yet."""
    while sub.status is Status.ACTIVE:
        steps: list[tuple[datetime, int]] = []
        if sub.pending is not None and sub.pending.effective_at <= now:
            steps.append((sub.pending.effective_at, 0))
        if sub.cancel_at is not None and sub.cancel_at <= now:
            steps.append((sub.cancel_at, 1))
        lapse = sub.lapses_at()
        if lapse is not None and lapse <= now:
            steps.append((lapse, 2))
        if not steps:
            return sub
        moment, kind = min(steps)
        if kind == 0:
            sub = with_change_applied(sub)
        elif kind == 1:
            sub = dataclasses.replace(sub, status=transition(sub.status, Event.CANCELLATION_ENDED),
                                      ended_at=moment, pending=None)
        else:
            sub = dataclasses.replace(sub, status=transition(sub.status, Event.LAPSED), ended_at=moment,
                                      pending=None)
    return sub


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
    payment: Payment | None = None
    grace_ends_at: datetime | None = None  # while a payment is pending or overdue
    since: datetime | None = None  # it holds over [since, until); None: unbounded
    until: datetime | None = None

    def refusal(self, used: int) -> Refusal | None:
        return gate.refusal(closed=self.closed, cap=self.cap, cap_refusal=self.cap_refusal, used=used)

    def status_with(self, used: int) -> Status:
        """The status once usage is known: a trial out of sessions has expired."""
        if self.status is Status.TRIALING and self.trial is not None and self.trial.out_of_sessions(used):
            return Status.EXPIRED
        return self.status


def standing(sub: Subscription, now: datetime, *, billing_enabled: bool = True) -> Standing:
    """`sub` as stored; the standing is that of `at(sub, now)`."""
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
            since=None if status is Status.TRIALING else trial.ends_at,
            until=trial.ends_at if status is Status.TRIALING else None,
        )
    else:
        assert sub.plan is not None and sub.anchor is not None, "a paid subscription has a plan"
        sub = at(sub, now)
        assert sub.plan is not None
        period = sub.period(now)
        payment = sub.payment(now)
        if sub.status is not Status.ACTIVE:
            closed: Refusal | None = Refusal.SUBSCRIPTION_ENDED
        elif payment is Payment.OVERDUE:
            closed = Refusal.PAYMENT_OVERDUE
        else:
            closed = None
        later = sub.changes_after(now)
        result = Standing(
            status=sub.status,
            counter=period.key,
            period=period,
            closed=closed,
            cap=effective_limit(sub.plan, sub.custom_limit),
            cap_refusal=Refusal.SESSION_LIMIT_REACHED,
            answered_only=sub.plan.answered_only,
            trial=None,
            payment=payment,
            grace_ends_at=sub.grace_ends_at if payment is not None else None,
            since=now if sub.status is Status.ACTIVE else period.start,
            until=min(later) if later else period.end,
        )
    if not billing_enabled:
        # The deployment bills elsewhere: count, but never close the gate.
        return dataclasses.replace(result, closed=None, cap=None)
    return result


# -- what a tenant's owner, the provider and the clock do to a subscription ----------------------

def start_plan(sub: Subscription, plan: Plan, now: datetime, *, used: int, offline: bool = False) -> Subscription:
    """A paid plan starts now: from the trial (which ends), an ended plan, or (offline) another plan.
    Monthly periods from now; the tenant's own limit is kept where it had one."""
    current = at(sub, now) if sub.paid else sub
    status = current.status
    if status is Status.TRIALING and current.trial.is_over(now, used):
        status = transition(status, Event.TRIAL_RAN_OUT)
    status = transition(status, Event.PLAN_STARTED)
    custom = kept_limit(current.custom_limit, plan) if current.paid and current.status is Status.ACTIVE else None
    return dataclasses.replace(
        current, status=status, plan=plan, anchor=now, custom_limit=custom, pending=None, cancel_at=None,
        payment_failed_at=None, grace_ends_at=None, ended_at=None, offline=offline,
    )


# A failed charge is tried again this long after the first failure, while the grace period runs (R10).
RETRY_AFTER = (timedelta(days=2), timedelta(days=4), timedelta(days=6))


def with_payment_failed(sub: Subscription, first_failed_at: datetime | None, grace: timedelta) -> Subscription:
    """Payment issue from the first failed charge of the oldest unpaid invoice, with its grace
    period (R10); None: paid up, Active again."""
    if sub.status is not Status.ACTIVE:
        return sub
    if first_failed_at is None:
        return dataclasses.replace(sub, payment_failed_at=None, grace_ends_at=None)
    return dataclasses.replace(sub, payment_failed_at=first_failed_at, grace_ends_at=first_failed_at + grace)


def next_retry(first_failed_at: datetime, failures: int, grace: timedelta) -> datetime | None:
    """When an invoice that failed `failures` times is charged again: the next of the retries that
    fall inside the grace period; None once they have all been tried."""
    retries = [first_failed_at + d for d in RETRY_AFTER if d < grace]
    return retries[failures - 1] if 0 < failures <= len(retries) else None
