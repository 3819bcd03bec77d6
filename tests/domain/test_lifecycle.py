"""A paid plan over time: scheduled changes, cancellation, failed payments and their grace period
(R8, R10, R11), the standing they give the gate and the badges they give the card (R12)."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from agentbilling.domain.card import PAYMENT_OVERDUE_HELP, Badge, Banner, banners, cards, session_limit_card
from agentbilling.domain.gate import Refusal
from agentbilling.domain.plan_change import PlanChange
from agentbilling.domain.subscription import (
    Payment,
    Status,
    at,
    next_retry,
    standing,
    start_plan,
    with_payment_failed,
)
from tests.support.domain import DAY, GROWTH, STARTER, T0, US, fast, paid_sub, trial_sub

GRACE = 7 * DAY
PERIOD_END = T0.replace(month=2, day=28)  # the first period of a Jan 31 anchor: Jan 31 .. Feb 28


def failed(sub, when):
    return dataclasses.replace(sub, payment_failed_at=when, grace_ends_at=when + GRACE)


def badges(sub, now, used=0):
    return [c.badge for c in cards(sub, standing(sub, now), now, used)]


# --- scheduled plan changes ------------------------------------------------------------------


def test_a_scheduled_change_takes_effect_at_its_moment_and_the_period_goes_on():
    sub = dataclasses.replace(paid_sub(STARTER), pending=PlanChange(GROWTH, PERIOD_END))
    before = standing(sub, PERIOD_END - US)
    assert before.cap == STARTER.base_session_limit and before.until == PERIOD_END
    assert badges(sub, PERIOD_END - US) == [Badge.ACTIVE, Badge.UPCOMING]
    upcoming = cards(sub, before, PERIOD_END - US, 0)[1]
    assert upcoming.plan == GROWTH and upcoming.starts_on == date(2026, 2, 28)

    after = standing(sub, PERIOD_END)
    assert after.cap == GROWTH.base_session_limit
    assert after.period.start == PERIOD_END  # the anchor stays: a change does not restart the period
    assert badges(sub, PERIOD_END) == [Badge.ACTIVE]
    assert at(sub, PERIOD_END).plan == GROWTH and at(sub, PERIOD_END).pending is None


def test_a_custom_limit_survives_a_change_lowered_to_the_new_plans_highest():
    sub = dataclasses.replace(paid_sub(GROWTH, custom_limit=20_000), pending=PlanChange(STARTER, T0 + DAY))
    assert standing(sub, T0 + DAY).cap == STARTER.max_session_limit


@fast
@given(offset=st.timedeltas(timedelta(0), timedelta(days=60)))
def test_the_standing_holds_over_its_whole_window(offset):
    """What the gate keeps per tenant is right at every moment of the window it is kept for."""
    sub = failed(dataclasses.replace(paid_sub(STARTER), pending=PlanChange(GROWTH, T0 + 10 * DAY)), T0 + 3 * DAY)
    now = T0 + offset
    st_ = standing(sub, now)
    assert st_.since <= now and (st_.until is None or now < st_.until)
    for moment in (st_.since, now, (st_.until - US) if st_.until else now + 400 * DAY):
        later = standing(sub, moment)
        assert (later.closed, later.cap, later.counter, later.status) == (st_.closed, st_.cap, st_.counter, st_.status)


# --- cancellation (R11) ----------------------------------------------------------------------


def test_a_cancelled_plan_runs_to_its_period_end_then_closes_the_gate_keeping_the_badge():
    sub = dataclasses.replace(paid_sub(STARTER), cancel_at=PERIOD_END)
    running = standing(sub, PERIOD_END - US)
    assert running.refusal(0) is None and running.cap == STARTER.base_session_limit
    card = cards(sub, running, PERIOD_END - US, 0)[0]
    assert card.badge is Badge.CANCELED and card.expires_on == PERIOD_END
    assert session_limit_card(at(sub, PERIOD_END - US), running, 0) is not None

    ended = standing(sub, PERIOD_END)
    assert ended.status is Status.CANCELED and ended.refusal(0) is Refusal.SUBSCRIPTION_ENDED
    card = cards(sub, ended, PERIOD_END + DAY, 0)[0]
    assert card.badge is Badge.CANCELED and card.expires_on == PERIOD_END  # now in the past
    assert session_limit_card(at(sub, PERIOD_END), ended, 0) is None


def test_subscribing_again_after_a_cancellation_starts_a_plan_never_a_trial():
    sub = dataclasses.replace(paid_sub(STARTER), cancel_at=PERIOD_END)
    again = start_plan(sub, GROWTH, PERIOD_END + 3 * DAY, used=0)
    assert again.status is Status.ACTIVE and again.anchor == PERIOD_END + 3 * DAY
    assert again.cancel_at is None and again.ended_at is None


# --- failed payments (R10) -------------------------------------------------------------------


def test_a_failed_payment_gives_a_grace_period_then_closes_the_gate_as_overdue():
    failed_at = T0 + 2 * DAY
    sub = failed(paid_sub(STARTER), failed_at)
    in_grace = standing(sub, failed_at + GRACE - US)
    assert in_grace.payment is Payment.PENDING and in_grace.refusal(0) is None
    assert badges(sub, failed_at + DAY) == [Badge.PAYMENT_ISSUE]
    (banner,) = banners(in_grace, 0)
    assert banner.title == "Payment pending" and "February 9, 2026" in banner.text

    overdue = standing(sub, failed_at + GRACE)
    assert overdue.payment is Payment.OVERDUE
    assert overdue.refusal(0) is Refusal.PAYMENT_OVERDUE
    assert badges(sub, failed_at + GRACE) == [Badge.PAYMENT_ISSUE]
    assert banners(overdue, 0) == [Banner("Your payment is overdue and the grace period has expired.",
                                          PAYMENT_OVERDUE_HELP)]


def test_still_unpaid_when_its_period_ends_the_plan_expires():
    sub = failed(paid_sub(STARTER), T0 + 2 * DAY)
    assert standing(sub, PERIOD_END - US).status is Status.ACTIVE
    ended = standing(sub, PERIOD_END)
    assert ended.status is Status.EXPIRED and ended.refusal(0) is Refusal.SUBSCRIPTION_ENDED
    assert badges(sub, PERIOD_END) == [Badge.EXPIRED]


def test_payment_issue_wins_over_canceled_and_both_over_active():
    both = failed(dataclasses.replace(paid_sub(STARTER), cancel_at=PERIOD_END), T0 + DAY)
    assert badges(both, T0 + 2 * DAY) == [Badge.PAYMENT_ISSUE]
    assert badges(dataclasses.replace(both, payment_failed_at=None, grace_ends_at=None), T0 + 2 * DAY) == [
        Badge.CANCELED]


def test_the_trial_never_has_a_payment_issue():
    assert standing(trial_sub(), T0 + DAY).payment is None


def test_retries_fall_on_days_2_4_and_6_of_a_7_day_grace_then_stop():
    failed_at = T0 + DAY
    assert [next_retry(failed_at, n, GRACE) for n in (1, 2, 3, 4)] == [
        failed_at + 2 * DAY, failed_at + 4 * DAY, failed_at + 6 * DAY, None]
    assert next_retry(failed_at, 1, 3 * DAY) == failed_at + 2 * DAY  # a short grace keeps only what fits
    assert next_retry(failed_at, 2, 3 * DAY) is None
    assert next_retry(failed_at, 1, timedelta(0)) is None  # no grace: no retries


def test_payment_state_follows_the_oldest_failed_charge_and_clears_when_paid():
    sub = with_payment_failed(paid_sub(STARTER), T0 + DAY, GRACE)
    assert (sub.payment_failed_at, sub.grace_ends_at) == (T0 + DAY, T0 + 8 * DAY)
    assert with_payment_failed(sub, None, GRACE).payment(T0 + 2 * DAY) is None
    ended = dataclasses.replace(sub, status=Status.EXPIRED)
    assert with_payment_failed(ended, None, GRACE) == ended  # an ended plan keeps how it ended
