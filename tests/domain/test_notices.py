"""R14: which notices are due, with which key, and when; pure, no database."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from agentbilling.domain.notices import NoticeType, due_notices, event_notices, notices_due_after
from agentbilling.domain.plan_change import PlanChange
from agentbilling.domain.subscription import Status
from tests.support.domain import DAY, GROWTH, STARTER, T0, paid_sub, trial_sub

N = NoticeType


def kinds(found) -> list[NoticeType]:
    return [n.type for n in found]


def test_trial_reminders_by_sessions_and_days():
    trial = trial_sub()
    assert kinds(due_notices(trial, 29, T0 + DAY)) == []
    assert kinds(due_notices(trial, 30, T0 + DAY)) == [N.TRIAL_SESSIONS_60]
    assert kinds(due_notices(trial, 45, T0 + DAY)) == [N.TRIAL_SESSIONS_60, N.TRIAL_SESSIONS_90]
    assert kinds(due_notices(trial, 0, T0 + 7 * DAY - DAY / 24)) == []  # a little more than 7 days left
    assert kinds(due_notices(trial, 0, T0 + 7 * DAY)) == [N.TRIAL_DAYS_7]  # exactly 7 left
    assert kinds(due_notices(trial, 0, T0 + 12 * DAY)) == [N.TRIAL_DAYS_7, N.TRIAL_DAYS_2]


def test_once_the_trial_is_over_only_trial_ended_is_due():
    trial = trial_sub()
    assert kinds(due_notices(trial, 50, T0 + DAY)) == [N.TRIAL_ENDED]  # out of sessions
    assert kinds(due_notices(trial, 10, T0 + 14 * DAY)) == [N.TRIAL_ENDED]  # out of days
    (ended,) = due_notices(trial, 10, T0 + 20 * DAY)
    assert ended.key == "trial_ended:trial"


def test_a_paid_plan_gets_no_trial_reminders_and_limit_warnings_per_period():
    sub = paid_sub(STARTER, custom_limit=100)
    assert kinds(due_notices(sub, 79, T0 + DAY)) == []
    assert kinds(due_notices(sub, 80, T0 + DAY)) == [N.LIMIT_80]
    first = due_notices(sub, 100, T0 + DAY)
    assert kinds(first) == [N.LIMIT_80, N.LIMIT_100]
    later = due_notices(sub, 100, T0 + 40 * DAY)  # the next period: new keys
    assert {n.key for n in first}.isdisjoint({n.key for n in later})


def test_grace_ending_a_day_before_then_overdue():
    failed = T0 + 28 * DAY
    sub = dataclasses.replace(paid_sub(STARTER), payment_failed_at=failed, grace_ends_at=failed + 7 * DAY)
    assert kinds(due_notices(sub, 0, failed + 5 * DAY)) == []
    assert kinds(due_notices(sub, 0, failed + 6 * DAY)) == [N.GRACE_ENDING]
    assert kinds(due_notices(sub, 0, failed + 7 * DAY)) == [N.PAYMENT_OVERDUE]
    assert notices_due_after(sub, failed) == [failed + 6 * DAY, failed + 7 * DAY]


def test_the_trials_reminder_moments():
    assert notices_due_after(trial_sub(), T0) == [T0 + 7 * DAY, T0 + 12 * DAY, T0 + 14 * DAY]
    assert notices_due_after(trial_sub(), T0 + 13 * DAY) == [T0 + 14 * DAY]
    assert notices_due_after(paid_sub(), T0) == []


def test_events_of_a_write():
    before = paid_sub(STARTER)
    change = PlanChange(GROWTH, T0 + 10 * DAY)
    scheduled = dataclasses.replace(before, pending=change)
    assert kinds(event_notices(before, scheduled, T0)) == [N.PLAN_CHANGE_SCHEDULED]
    assert event_notices(scheduled, scheduled, T0) == []  # nothing changed, nothing told
    applied = dataclasses.replace(before, plan=GROWTH)
    assert kinds(event_notices(scheduled, applied, T0 + 10 * DAY)) == [N.PLAN_CHANGE_APPLIED]
    canceled = dataclasses.replace(before, cancel_at=T0 + 28 * DAY)
    assert kinds(event_notices(before, canceled, T0)) == [N.SUBSCRIPTION_CANCELED]
    ended = dataclasses.replace(canceled, status=Status.CANCELED, ended_at=T0 + 28 * DAY)
    assert kinds(event_notices(canceled, ended, T0 + 28 * DAY)) == [N.SUBSCRIPTION_EXPIRED]
    failed = dataclasses.replace(before, payment_failed_at=T0 + 28 * DAY, grace_ends_at=T0 + 35 * DAY)
    (n,) = event_notices(before, failed, T0 + 28 * DAY)
    assert n.type is N.PAYMENT_FAILED and n.key == f"payment_failed:{(T0 + 28 * DAY).isoformat()}"


@given(used=st.integers(min_value=0, max_value=200), days=st.integers(min_value=0, max_value=40))
def test_keys_are_unique_within_what_is_due(used, days):
    for sub in (trial_sub(), paid_sub(STARTER, custom_limit=60)):
        found = due_notices(sub, used, T0 + days * DAY)
        assert len({n.key for n in found}) == len(found)
        assert all(n.key.startswith(n.type.value + ":") for n in found)
