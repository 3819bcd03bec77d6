"""R12: the subscription card's badges and figures, and the Billing tab's banners."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentbilling.domain.card import (
    LIMIT_REACHED_TEXT,
    TRIAL_TITLE,
    Badge,
    Banner,
    banners,
    cards,
    paid_plan_running,
)
from agentbilling.domain.gate import Refusal
from agentbilling.domain.subscription import Status, Subscription, standing
from tests.support.domain import DAY, OUTREACH, STARTER, T0, US, fast, paid_sub, trial_sub


def card_at(sub: Subscription, now, used: int):
    result = cards(sub, standing(sub, now), now, used)
    assert len(result) == 1  # one card, one badge
    return result[0]


def test_badge_texts_are_the_help_pages():
    assert Badge.TRIAL == "Trial subscription"
    assert Badge.TRIAL_ENDING_SOON == "Trial ending soon"
    assert Badge.ACTIVE == "Active subscription"
    assert Badge.EXPIRED == "Expired subscription"


# --- the trial card --------------------------------------------------------------------------


def test_trial_card():
    sub = trial_sub()
    c = card_at(sub, T0 + 3 * DAY, 10)
    assert c.badge is Badge.TRIAL
    assert c.title == TRIAL_TITLE
    assert c.plan is None
    assert c.sessions_count == 10
    assert c.trial_sessions_left == 40
    assert c.trial_days_left == 11
    assert c.expires_on == sub.trial.ends_at
    assert c.next_billing_date is None
    assert c.tags == ()


def test_trial_ending_soon_by_days():
    sub = trial_sub()
    assert card_at(sub, T0 + 7 * DAY - US, 0).badge is Badge.TRIAL  # 7 days + 1µs left: 8
    c = card_at(sub, T0 + 7 * DAY, 0)  # exactly 7 days left
    assert c.badge is Badge.TRIAL_ENDING_SOON
    assert c.trial_days_left == 7


def test_trial_ending_soon_by_sessions():
    sub = trial_sub()
    assert card_at(sub, T0 + DAY, 44).badge is Badge.TRIAL
    c = card_at(sub, T0 + DAY, 45)  # 90% used
    assert c.badge is Badge.TRIAL_ENDING_SOON
    assert c.trial_sessions_left == 5


def test_trial_expired_by_days():
    sub = trial_sub()
    c = card_at(sub, sub.trial.ends_at, 3)
    assert c.badge is Badge.EXPIRED
    assert c.trial_days_left == 0
    assert c.trial_sessions_left == 47
    assert c.sessions_count == 3


@pytest.mark.parametrize("used", [50, 51, 64])
def test_trial_expired_by_sessions(used):
    c = card_at(trial_sub(), T0 + DAY, used)
    assert c.badge is Badge.EXPIRED
    assert c.trial_sessions_left == 0  # never below 0
    assert c.trial_days_left == 13
    assert c.sessions_count == used


@fast
@given(elapsed=st.timedeltas(timedelta(0), timedelta(days=30)), used=st.integers(0, 100))
def test_trial_badge_follows_the_trial(elapsed, used):
    sub = trial_sub()
    now = T0 + elapsed
    c = card_at(sub, now, used)
    if sub.trial.is_over(now, used):
        assert c.badge is Badge.EXPIRED
    elif sub.trial.ending_soon(now, used):
        assert c.badge is Badge.TRIAL_ENDING_SOON
    else:
        assert c.badge is Badge.TRIAL
    assert c.trial_sessions_left == max(0, 50 - used)
    assert c.trial_days_left == sub.trial.days_left(now)


# --- paid cards ------------------------------------------------------------------------------


def test_active_card_with_next_billing_date_the_period_end():
    sub = paid_sub(STARTER)  # anchor Jan 31 2026 09:00
    c = card_at(sub, T0 + DAY, 120)
    assert c.badge is Badge.ACTIVE
    assert c.title == "Starter"
    assert c.plan == STARTER
    assert c.sessions_count == 120
    assert c.next_billing_date == date(2026, 2, 28)
    assert c.trial_sessions_left is None and c.trial_days_left is None
    assert c.tags == ()
    # Next period: Feb 28 .. Mar 31.
    assert card_at(sub, T0 + 30 * DAY, 0).next_billing_date == date(2026, 3, 31)


@fast
@given(elapsed=st.timedeltas(timedelta(0), timedelta(days=800)))
def test_next_billing_date_is_always_the_current_period_end(elapsed):
    sub = paid_sub(STARTER)
    now = T0 + elapsed
    st_ = standing(sub, now)
    c = cards(sub, st_, now, 0)[0]
    assert c.next_billing_date == st_.period.end.date()
    assert c.next_billing_date >= now.date()


def test_active_card_over_the_limit_is_still_active():
    assert card_at(paid_sub(STARTER), T0 + DAY, 5000).badge is Badge.ACTIVE


def test_answered_only_tag_on_the_card():
    c = card_at(paid_sub(OUTREACH), T0 + DAY, 0)
    assert c.tags == ("Answered only",)


def test_expired_paid_card():
    c = card_at(paid_sub(OUTREACH, status=Status.EXPIRED), T0 + DAY, 7)
    assert c.badge is Badge.EXPIRED
    assert c.title == "Outreach"
    assert c.next_billing_date is None
    assert c.sessions_count == 7
    assert c.tags == ("Answered only",)


# --- banners ---------------------------------------------------------------------------------


def test_no_banner_while_agents_run():
    assert banners(standing(trial_sub(), T0 + DAY), 10) == []
    assert banners(standing(paid_sub(STARTER), T0 + DAY), 999) == []


def test_banner_for_an_ended_subscription():
    expected = [Banner("Your subscription has ended. Please upgrade your plan to continue.",
                       "The trial or plan has expired. Subscribe to a paid plan in the Plans section.")]
    assert banners(standing(trial_sub(), T0 + 14 * DAY), 0) == expected  # trial out of days
    assert banners(standing(trial_sub(), T0 + DAY), 50) == expected  # trial out of sessions
    assert banners(standing(paid_sub(STARTER, status=Status.EXPIRED), T0 + DAY), 0) == expected


def test_banner_for_a_reached_limit():
    assert banners(standing(paid_sub(STARTER), T0 + DAY), 1000) == [
        Banner(
            "Session limit has been reached",
            "When the session count reaches the limit, all AI agents stop accepting new sessions. "
            "To resume, increase the limit or wait until the counter resets at the start of the next billing period.",
        )
    ]
    assert LIMIT_REACHED_TEXT.startswith("When the session count reaches the limit")


def test_banner_for_an_overdue_payment():
    st_ = dataclasses.replace(standing(paid_sub(STARTER), T0 + DAY), closed=Refusal.PAYMENT_OVERDUE)
    assert banners(st_, 0) == [
        Banner("Your payment is overdue and the grace period has expired.",
               "Click Manage on the subscription card and settle the failed payment in the billing portal.")
    ]


def test_no_banner_when_billing_is_disabled():
    assert banners(standing(trial_sub(), T0 + 30 * DAY, billing_enabled=False), 99) == []
    assert banners(standing(paid_sub(STARTER), T0 + DAY, billing_enabled=False), 10**6) == []


def test_a_paid_plan_runs_while_active_also_in_a_payment_issue_or_cancelled_not_on_the_trial_or_after():
    def running(sub, now, used=0):
        return paid_plan_running(sub, standing(sub, now), used)

    assert not running(trial_sub(), T0 + DAY)
    assert running(paid_sub(STARTER), T0 + DAY)
    failed = dataclasses.replace(paid_sub(STARTER), payment_failed_at=T0 + DAY, grace_ends_at=T0 + 8 * DAY)
    assert running(failed, T0 + 2 * DAY)
    cancelled = dataclasses.replace(paid_sub(STARTER), cancel_at=T0 + 28 * DAY)
    assert running(cancelled, T0 + 2 * DAY)
    assert not running(cancelled, T0 + 29 * DAY)  # the plan ended
    assert not running(paid_sub(STARTER, status=Status.EXPIRED), T0 + DAY)
