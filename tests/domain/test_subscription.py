"""The subscription lifecycle (transition table, R6) and its standing at `now`."""

from __future__ import annotations

from datetime import timedelta
from itertools import product

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentbilling.domain.errors import Conflict
from agentbilling.domain.gate import Refusal
from agentbilling.domain.limits import effective_limit
from agentbilling.domain.periods import period_at
from agentbilling.domain.subscription import TRANSITIONS, TRIAL_COUNTER, Event, Status, standing, transition
from tests.support.domain import DAY, GROWTH, OUTREACH, STARTER, T0, US, fast, paid_sub, trial_sub

ALLOWED = {
    (Status.TRIALING, Event.TRIAL_RAN_OUT): Status.EXPIRED,
    (Status.TRIALING, Event.PLAN_STARTED): Status.ACTIVE,
    (Status.ACTIVE, Event.PLAN_STARTED): Status.ACTIVE,
    (Status.EXPIRED, Event.PLAN_STARTED): Status.ACTIVE,
    (Status.CANCELED, Event.PLAN_STARTED): Status.ACTIVE,
    (Status.ACTIVE, Event.CANCELLATION_ENDED): Status.CANCELED,
    (Status.ACTIVE, Event.LAPSED): Status.EXPIRED,
}


def test_transition_table_is_exactly_the_allowed_pairs():
    assert TRANSITIONS == ALLOWED


@pytest.mark.parametrize(("pair", "target"), list(ALLOWED.items()))
def test_allowed_transitions(pair, target):
    assert transition(*pair) is target


REFUSED = [p for p in product(Status, Event) if p not in ALLOWED]


def test_the_refused_pairs():
    ended = {(s, e) for s in (Status.EXPIRED, Status.CANCELED)
             for e in (Event.TRIAL_RAN_OUT, Event.CANCELLATION_ENDED, Event.LAPSED)}
    trial = {(Status.TRIALING, Event.CANCELLATION_ENDED), (Status.TRIALING, Event.LAPSED)}
    assert set(REFUSED) == ended | trial | {(Status.ACTIVE, Event.TRIAL_RAN_OUT)}


@pytest.mark.parametrize(("status", "event"), REFUSED)
def test_refused_transitions_raise_conflict(status, event):
    with pytest.raises(Conflict) as exc:
        transition(status, event)
    assert exc.value.code == "conflict"
    assert status.value in exc.value.detail and event.value in exc.value.detail


def test_no_transition_leads_back_into_the_trial():
    assert Status.TRIALING not in TRANSITIONS.values()


@fast
@given(events=st.lists(st.sampled_from(list(Event)), max_size=20))
def test_once_the_trial_is_left_it_never_comes_back(events):
    status = Status.TRIALING
    left = False
    for event in events:
        try:
            status = transition(status, event)
        except Conflict:
            continue
        left = left or status is not Status.TRIALING
        if left:
            assert status is not Status.TRIALING
    # A tenant whose plan ended can only subscribe again (R6).
    if status in (Status.EXPIRED, Status.CANCELED):
        assert transition(status, Event.PLAN_STARTED) is Status.ACTIVE
        with pytest.raises(Conflict):
            transition(status, Event.TRIAL_RAN_OUT)


# --- standing on the trial -------------------------------------------------------------------


def test_trial_standing():
    sub = trial_sub()
    st_ = standing(sub, T0 + 3 * DAY)
    assert st_.status is Status.TRIALING
    assert st_.counter == TRIAL_COUNTER == "trial"  # one trial per tenant, one trial counter
    assert st_.period is None
    assert st_.closed is None
    assert st_.cap == 50
    assert st_.cap_refusal is Refusal.SUBSCRIPTION_ENDED
    assert st_.answered_only is False
    assert st_.trial == sub.trial


def test_trial_expires_by_days():
    sub = trial_sub()
    assert standing(sub, sub.trial.ends_at - US).status is Status.TRIALING
    st_ = standing(sub, sub.trial.ends_at)
    assert st_.status is Status.EXPIRED
    assert st_.closed is Refusal.SUBSCRIPTION_ENDED
    assert st_.counter == TRIAL_COUNTER


def test_trial_expires_by_sessions_once_usage_is_known():
    st_ = standing(trial_sub(), T0 + DAY)
    assert st_.status_with(49) is Status.TRIALING
    assert st_.status_with(50) is Status.EXPIRED
    assert st_.status_with(80) is Status.EXPIRED


@fast
@given(elapsed=st.timedeltas(timedelta(0), timedelta(days=60)))
def test_trial_counts_in_the_one_trial_counter_whenever(elapsed):
    st_ = standing(trial_sub(), T0 + elapsed)
    assert st_.counter == TRIAL_COUNTER
    assert st_.period is None


# --- standing on a paid plan -----------------------------------------------------------------


def test_active_standing():
    sub = paid_sub(STARTER)
    now = T0 + 40 * DAY  # in the second period (Feb 28 .. Mar 31)
    st_ = standing(sub, now)
    assert st_.status is Status.ACTIVE
    assert st_.period == period_at(T0, now)
    assert st_.period.index == 1
    assert st_.counter == st_.period.key == "2026-02-28T09:00:00.000000Z"
    assert st_.closed is None
    assert st_.cap == 1000
    assert st_.cap_refusal is Refusal.SESSION_LIMIT_REACHED
    assert st_.answered_only is False
    assert st_.trial is None
    assert st_.status_with(10**6) is Status.ACTIVE  # usage never expires a paid plan


def test_answered_only_follows_the_plan():
    assert standing(paid_sub(OUTREACH), T0).answered_only is True
    assert standing(paid_sub(GROWTH), T0).answered_only is False


def test_custom_limit_is_the_cap_lowered_to_the_highest():
    assert standing(paid_sub(STARTER, custom_limit=200), T0).cap == 200
    assert standing(paid_sub(STARTER, custom_limit=20000), T0).cap == 5000


def test_expired_standing_is_closed():
    st_ = standing(paid_sub(STARTER, status=Status.EXPIRED), T0 + DAY)
    assert st_.status is Status.EXPIRED
    assert st_.closed is Refusal.SUBSCRIPTION_ENDED


@fast
@given(
    elapsed=st.timedeltas(timedelta(0), timedelta(days=800)),
    custom=st.one_of(st.none(), st.integers(1, 50_000)),
)
def test_paid_counter_start_is_the_period_start(elapsed, custom):
    sub = paid_sub(GROWTH, custom_limit=custom)
    now = T0 + elapsed
    st_ = standing(sub, now)
    assert st_.period == period_at(sub.anchor, now)
    assert st_.period.start <= now < st_.period.end
    assert st_.counter == st_.period.key
    assert st_.counter != TRIAL_COUNTER
    assert st_.cap == effective_limit(GROWTH, custom)


def test_counter_resets_at_the_period_boundary():
    sub = paid_sub(STARTER)
    boundary = period_at(T0, T0).end
    before = standing(sub, boundary - US)
    after = standing(sub, boundary)
    assert before.counter == period_at(T0, T0).key
    assert after.counter == period_at(T0, boundary).key
    assert before.counter != after.counter


def test_a_plan_starting_the_instant_the_trial_began_counts_apart_from_the_trial():
    # Same instant, different counters: subscribing does not inherit the trial's usage.
    assert standing(trial_sub(T0), T0).counter != standing(paid_sub(STARTER, anchor=T0), T0).counter
