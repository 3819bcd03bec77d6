"""The subscription card, its badges and the banners of the Billing tab (R12)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from agentbilling.domain.gate import Refusal
from agentbilling.domain.limits import SessionLimit, effective_limit
from agentbilling.domain.plans import Plan
from agentbilling.domain.subscription import Standing, Status, Subscription

TRIAL_TITLE = "Free trial"
LIMIT_REACHED_TEXT = (
    "When the session count reaches the limit, all AI agents stop accepting new sessions. "
    "To resume, increase the limit or wait until the counter resets at the start of the next billing period."
)


class Badge(StrEnum):
    TRIAL = "Trial subscription"
    TRIAL_ENDING_SOON = "Trial ending soon"
    ACTIVE = "Active subscription"
    EXPIRED = "Expired subscription"


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
    plan = sub.plan
    assert plan is not None and st.period is not None
    if status is Status.EXPIRED:
        return [Card(badge=Badge.EXPIRED, title=plan.name, plan=plan, sessions_count=used, tags=plan.tags)]
    return [
        Card(
            badge=Badge.ACTIVE,
            title=plan.name,
            plan=plan,
            sessions_count=used,
            next_billing_date=st.period.end.date(),
            tags=plan.tags,
        )
    ]


def session_limit_card(sub: Subscription, st: Standing, used: int) -> SessionLimit | None:
    """The Session limit card: on an active paid plan only, not on the trial nor after the end (R9)."""
    if sub.plan is None or st.status_with(used) is not Status.ACTIVE:
        return None
    return SessionLimit(
        limit=effective_limit(sub.plan, sub.custom_limit),
        base_limit=sub.plan.base_session_limit,
        used=used,
        custom=sub.custom_limit is not None,
    )


def banners(st: Standing, used: int) -> list[Banner]:
    """What the top of the tab says when agents are stopped (the help page's Common issues)."""
    reason = st.refusal(used)
    if reason is Refusal.SUBSCRIPTION_ENDED:
        return [Banner(Badge.EXPIRED.value, reason.message)]
    if reason is Refusal.SESSION_LIMIT_REACHED:
        return [Banner(reason.message, LIMIT_REACHED_TEXT)]
    if reason is Refusal.PAYMENT_OVERDUE:
        return [Banner("Payment issue", reason.message)]
    return []
