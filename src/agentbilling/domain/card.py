"""The subscription card, its badges and the banners of the Billing tab (R12)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from agentbilling.domain.gate import Refusal
from agentbilling.domain.limits import SessionLimit, effective_limit
from agentbilling.domain.plans import Plan
from agentbilling.domain.subscription import Payment, Standing, Status, Subscription, at

TRIAL_TITLE = "Free trial"
LIMIT_REACHED_TEXT = (
    "When the session count reaches the limit, all AI agents stop accepting new sessions. "
    "To resume, increase the limit or wait until the counter resets at the start of the next billing period."
)


def long_date(moment: datetime) -> str:
    """A day as the help page's texts write it, whatever the reader's locale: March 7, 2026."""
    return f"{moment:%B} {moment.day}, {moment.year}"


def payment_pending_text(grace_ends_at: datetime) -> str:
    return (f"Your last payment failed. Your access is temporarily extended until {long_date(grace_ends_at)} "
            "so you can fix the payment without downtime: click Manage on your subscription card and update your "
            "payment details.")


class Badge(StrEnum):
    TRIAL = "Trial subscription"
    TRIAL_ENDING_SOON = "Trial ending soon"
    ACTIVE = "Active subscription"
    UPCOMING = "Upcoming subscription"
    PAYMENT_ISSUE = "Payment issue"
    CANCELED = "Canceled subscription"
    EXPIRED = "Expired subscription"


PAYMENT_PENDING_TITLE = "Payment pending"


@dataclass(frozen=True, slots=True)
class Card:
    badge: Badge
    title: str
    plan: Plan | None  # None on the trial
    sessions_count: int
    trial_sessions_left: int | None = None
    trial_days_left: int | None = None
    next_billing_date: date | None = None
    starts_on: date | None = None
    expires_on: datetime | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Banner:
    title: str
    text: str


def cards(sub: Subscription, st: Standing, now: datetime, used: int) -> list[Card]:
    """The cards of the tab, the current one first."""
    status = st.status_with(used)
    if sub.status is Status.TRIALING:
        trial = sub.trial
        if status is Status.EXPIRED:
            badge = Badge.EXPIRED
        elif trial.ending_soon(now, used):
            badge = Badge.TRIAL_ENDING_SOON
        else:
            badge = Badge.TRIAL
        return [
            Card(
                badge=badge,
                title=TRIAL_TITLE,
                plan=None,
                sessions_count=used,
                trial_sessions_left=trial.sessions_left(used),
                trial_days_left=trial.days_left(now),
                expires_on=trial.ends_at,
            )
        ]
    cur = at(sub, now)
    plan = cur.plan
    assert plan is not None and st.period is not None
    def card(badge: Badge, *, expires_on: datetime | None = None, next_billing_date: date | None = None) -> Card:
        return Card(badge=badge, title=plan.name, plan=plan, sessions_count=used, tags=plan.tags,
                    expires_on=expires_on, next_billing_date=next_billing_date)

    if cur.status is Status.EXPIRED:
        return [card(Badge.EXPIRED)]
    if cur.status is Status.CANCELED:
        return [card(Badge.CANCELED, expires_on=cur.ended_at)]
    # Payment issue wins over Canceled, and both over Active (R12).
    if st.payment is not None:
        current = card(Badge.PAYMENT_ISSUE, expires_on=cur.cancel_at)
    elif cur.cancel_at is not None:
        current = card(Badge.CANCELED, expires_on=cur.cancel_at)
    else:
        current = card(Badge.ACTIVE, next_billing_date=st.period.end.date())
    out = [current]
    if cur.pending is not None:
        nxt = cur.pending.plan
        out.append(Card(badge=Badge.UPCOMING, title=nxt.name, plan=nxt, sessions_count=0,
                        starts_on=cur.pending.starts_on(), tags=nxt.tags))
    return out


def paid_plan_running(sub: Subscription, st: Standing, used: int) -> bool:
    """A paid plan runs (in a payment issue, or cancelled for its period's end, too): the tab
    shows the Session limit card, and Subscribe on another plan changes the plan (R8, R9).
    `sub` as it stands now."""
    return sub.plan is not None and st.status_with(used) is Status.ACTIVE


def session_limit_card(sub: Subscription, st: Standing, used: int) -> SessionLimit | None:
    """The Session limit card: while a paid plan runs, not on the trial nor after the end (R9)."""
    if not paid_plan_running(sub, st, used) or sub.plan is None:
        return None
    return SessionLimit(
        limit=effective_limit(sub.plan, sub.custom_limit),
        base_limit=sub.plan.base_session_limit,
        used=used,
        custom=sub.custom_limit is not None,
    )


# The help page's Common issues, word for word: what the tab says while agents are stopped.
SUBSCRIPTION_ENDED_HELP = "The trial or plan has expired. Subscribe to a paid plan in the Plans section."
PAYMENT_OVERDUE_HELP = "Click Manage on the subscription card and settle the failed payment in the billing portal."


def banners(st: Standing, used: int) -> list[Banner]:
    """What the top of the tab says: a pending payment, or why agents are stopped and what to do."""
    reason = st.refusal(used)
    if st.payment is Payment.PENDING and reason is None:
        assert st.grace_ends_at is not None
        return [Banner(PAYMENT_PENDING_TITLE, payment_pending_text(st.grace_ends_at))]
    if reason is Refusal.SUBSCRIPTION_ENDED:
        return [Banner(reason.message, SUBSCRIPTION_ENDED_HELP)]
    if reason is Refusal.SESSION_LIMIT_REACHED:
        return [Banner(reason.message, LIMIT_REACHED_TEXT)]
    if reason is Refusal.PAYMENT_OVERDUE:
        return [Banner(reason.message, PAYMENT_OVERDUE_HELP)]
    return []
