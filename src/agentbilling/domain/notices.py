"""Which notices are due (R14): the trial's reminders, the limit's warnings, and the events of a
paid plan, each with a key that makes it go out once, and what each says."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from agentbilling.domain.card import long_date
from agentbilling.domain.limits import effective_limit
from agentbilling.domain.subscription import TRIAL_COUNTER, Payment, Status, Subscription, at

DAY = timedelta(days=1)
TRIAL_DAYS_REMINDERS = (7, 2)  # days left
TRIAL_SESSIONS_REMINDERS = (60, 90)  # percent of the trial's sessions used
LIMIT_WARNINGS = (80, 100)  # percent of the session limit used


class NoticeType(StrEnum):
    TRIAL_SESSIONS_60 = "trial_sessions_60"
    TRIAL_SESSIONS_90 = "trial_sessions_90"
    TRIAL_DAYS_7 = "trial_days_7"
    TRIAL_DAYS_2 = "trial_days_2"
    TRIAL_ENDED = "trial_ended"
    LIMIT_80 = "limit_80"
    LIMIT_100 = "limit_100"
    PAYMENT_FAILED = "payment_failed"
    GRACE_ENDING = "grace_ending"
    PAYMENT_OVERDUE = "payment_overdue"
    PLAN_CHANGE_SCHEDULED = "plan_change_scheduled"
    PLAN_CHANGE_APPLIED = "plan_change_applied"
    SUBSCRIPTION_CANCELED = "subscription_canceled"
    SUBSCRIPTION_EXPIRED = "subscription_expired"


@dataclass(frozen=True, slots=True)
class Notice:
    """A notice as the Billing tab, the email and the webhook all say it.

    Its key makes it go out once, whatever runs twice: threshold notices once per tenant and trial or
    period; event notices once per event, keyed by what they are about (the failed payment, the change,
    the cancellation, the end)."""
    type: NoticeType
    key: str  # unique per tenant: the notice goes out once
    title: str
    text: str


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _trial_notices(sub: Subscription, used: int, now: datetime) -> list[Notice]:
    trial = sub.trial
    if trial.is_over(now, used):
        return [Notice(NoticeType.TRIAL_ENDED, f"{NoticeType.TRIAL_ENDED}:{TRIAL_COUNTER}",
                       "Your free trial has ended",
                       "AI agents stop accepting new sessions until you subscribe to a paid plan. "
                       "Subscribe in the Plans section of Profile > Billing.")]
    out = []
    for pct in TRIAL_SESSIONS_REMINDERS:
        if used * 100 >= trial.sessions * pct:
            kind = NoticeType(f"trial_sessions_{pct}")
            out.append(Notice(kind, f"{kind}:{TRIAL_COUNTER}", f"You have used {pct}% of your trial sessions",
                              f"{used} of the {trial.sessions} trial sessions are used; "
                              f"{trial.sessions_left(used)} are left. Subscribe to a paid plan to keep your "
                              "AI agents running when the trial ends."))
    left = trial.days_left(now)
    for days in TRIAL_DAYS_REMINDERS:
        if left <= days:
            kind = NoticeType(f"trial_days_{days}")
            out.append(Notice(kind, f"{kind}:{TRIAL_COUNTER}", f"Your free trial ends in {left} "
                              f"day{'s' if left != 1 else ''}",
                              f"Your trial ends on {long_date(trial.ends_at)}. Subscribe to a paid plan to keep your "
                              "AI agents running."))
    return out


def due_notices(sub: Subscription, used: int, now: datetime) -> list[Notice]:
    """The threshold and time-based notices due at `now` for `sub` as stored, with `used` the
    billable sessions of the counter that applies now. A trial's reminders stop once it is over."""
    if sub.status is Status.TRIALING:
        return _trial_notices(sub, used, now)
    cur = at(sub, now)
    if cur.status is not Status.ACTIVE or cur.plan is None:
        return []
    out: list[Notice] = []
    limit = effective_limit(cur.plan, cur.custom_limit)
    period = cur.period(now)
    if limit:
        for pct in LIMIT_WARNINGS:
            if used * 100 >= limit * pct:
                kind = NoticeType(f"limit_{pct}")
                title = "Session limit has been reached" if pct == 100 else "Session limit almost reached"
                text = (f"{used} of your session limit of {limit} billable sessions are used in the billing period "
                        f"that ends on {long_date(period.end)}.")
                if pct == 100:
                    text += (" AI agents stop accepting new sessions: increase the limit or wait until the counter "
                             "resets at the start of the next billing period.")
                out.append(Notice(kind, f"{kind}:{period.key}", title, text))
    payment = cur.payment(now)
    if payment is not None and cur.payment_failed_at is not None and cur.grace_ends_at is not None:
        failed = _iso(cur.payment_failed_at)
        if payment is Payment.PENDING and now >= cur.grace_ends_at - DAY:
            out.append(Notice(NoticeType.GRACE_ENDING, f"{NoticeType.GRACE_ENDING}:{failed}",
                              "Your grace period ends tomorrow",
                              f"Your last payment failed and is still unpaid. On {long_date(cur.grace_ends_at)} "
                              "AI agents stop accepting new sessions: click Manage on your subscription card and "
                              "update your payment details."))
        if payment is Payment.OVERDUE:
            out.append(Notice(NoticeType.PAYMENT_OVERDUE, f"{NoticeType.PAYMENT_OVERDUE}:{failed}",
                              "Your payment is overdue and the grace period has expired.",
                              "AI agents stopped accepting new sessions. Click Manage on the subscription card and "
                              "settle the failed payment in the billing portal."))
    return out


def notices_due_after(sub: Subscription, now: datetime) -> list[datetime]:
    """The moments after `now` at which a time-based notice comes due (with no new sessions)."""
    if sub.status is Status.TRIALING:
        ends = sub.trial.ends_at
        return [m for m in (*(ends - d * DAY for d in TRIAL_DAYS_REMINDERS), ends) if m > now]
    cur = at(sub, now)
    if cur.payment(now) is not None and cur.grace_ends_at is not None:
        return [m for m in (cur.grace_ends_at - DAY, cur.grace_ends_at) if m > now]
    return []


def event_notices(before: Subscription, after: Subscription, now: datetime) -> list[Notice]:
    """What a write of the subscription tells the tenant: `before` as stored, `after` as written."""
    out: list[Notice] = []
    if after.payment_failed_at is not None and after.payment_failed_at != before.payment_failed_at:
        grace = f" Your access is extended until {long_date(after.grace_ends_at)} so you can fix it." \
            if after.grace_ends_at else ""
        out.append(Notice(NoticeType.PAYMENT_FAILED, f"{NoticeType.PAYMENT_FAILED}:{_iso(after.payment_failed_at)}",
                          "Your payment failed",
                          f"We could not charge your payment method.{grace} Click Manage on your subscription card "
                          "and update your payment details."))
    p = after.pending
    if p is not None and (before.pending is None or (before.pending.plan.id, before.pending.effective_at)
                          != (p.plan.id, p.effective_at)):
        out.append(Notice(NoticeType.PLAN_CHANGE_SCHEDULED,
                          f"{NoticeType.PLAN_CHANGE_SCHEDULED}:{p.plan.id}:{_iso(p.effective_at)}",
                          f"Your change to {p.plan.name} is scheduled",
                          f"Your subscription changes to the {p.plan.name} plan on {long_date(p.effective_at)}. "
                          "To undo it, click Cancel on the Upcoming subscription card."))
    if (before.paid and after.paid and before.plan and after.plan and before.plan.id != after.plan.id
            and after.status is Status.ACTIVE and before.status is Status.ACTIVE):
        out.append(Notice(NoticeType.PLAN_CHANGE_APPLIED,
                          f"{NoticeType.PLAN_CHANGE_APPLIED}:{after.plan.id}:{_iso(now)}",
                          f"You are now on the {after.plan.name} plan",
                          f"Your subscription changed from {before.plan.name} to {after.plan.name}. "
                          "Your session limits were recalculated right away."))
    if after.cancel_at is not None and after.cancel_at != before.cancel_at and after.status is Status.ACTIVE:
        out.append(Notice(NoticeType.SUBSCRIPTION_CANCELED,
                          f"{NoticeType.SUBSCRIPTION_CANCELED}:{_iso(after.cancel_at)}",
                          "Your subscription is canceled",
                          f"Your {after.plan.name if after.plan else ''} plan stays active until "
                          f"{long_date(after.cancel_at)}; then AI agents stop accepting new sessions."))
    if before.status is Status.ACTIVE and after.status in (Status.CANCELED, Status.EXPIRED):
        ended = after.ended_at or now
        out.append(Notice(NoticeType.SUBSCRIPTION_EXPIRED, f"{NoticeType.SUBSCRIPTION_EXPIRED}:{_iso(ended)}",
                          "Your subscription has ended",
                          "Your subscription has ended. Please upgrade your plan to continue: subscribe to a paid "
                          "plan in the Plans section of Profile > Billing."))
    return out
