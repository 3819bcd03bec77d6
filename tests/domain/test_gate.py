"""R4: the admission gate's reasons, their exact messages, and the decision."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentbilling.domain.gate import Refusal, refusal
from agentbilling.domain.subscription import Status, standing
from tests.support.domain import DAY, OUTREACH, STARTER, T0, UNCAPPED, fast, paid_sub, trial_sub


def test_the_three_reasons_with_their_codes_and_exact_messages():
    assert {(r.code, r.message) for r in Refusal} == {
        ("subscription-ended", "Your subscription has ended. Please upgrade your plan to continue."),
        ("payment-overdue", "Your payment is overdue and the grace period has expired."),
        ("session-limit-reached", "Session limit has been reached"),
    }
    assert Refusal.SUBSCRIPTION_ENDED.code == "subscription-ended"
    assert Refusal.PAYMENT_OVERDUE.code == "payment-overdue"
    assert Refusal.SESSION_LIMIT_REACHED.code == "session-limit-reached"
    assert Refusal.SUBSCRIPTION_ENDED.message == "Your subscription has ended. Please upgrade your plan to continue."
    assert Refusal.PAYMENT_OVERDUE.message == "Your payment is overdue and the grace period has expired."
    assert Refusal.SESSION_LIMIT_REACHED.message == "Session limit has been reached"


reasons = st.sampled_from(list(Refusal))
caps = st.one_of(st.none(), st.integers(0, 10_000))
usage = st.integers(0, 20_000)


@fast
@given(closed=reasons, cap=caps, cap_refusal=reasons, used=usage)
def test_a_closed_gate_stays_closed_whatever_the_usage(closed, cap, cap_refusal, used):
    assert refusal(closed=closed, cap=cap, cap_refusal=cap_refusal, used=used) is closed


@fast
@given(cap=caps, cap_refusal=reasons, used=usage)
def test_an_open_gate_closes_exactly_when_usage_reaches_the_cap(cap, cap_refusal, used):
    got = refusal(closed=None, cap=cap, cap_refusal=cap_refusal, used=used)
    if cap is not None and used >= cap:
        assert got is cap_refusal
    else:
        assert got is None


@fast
@given(used=usage)
def test_no_cap_never_closes(used):
    assert refusal(closed=None, cap=None, cap_refusal=Refusal.SESSION_LIMIT_REACHED, used=used) is None


@pytest.mark.parametrize(("used", "expected"), [(0, None), (999, None), (1000, Refusal.SESSION_LIMIT_REACHED),
                                                 (1500, Refusal.SESSION_LIMIT_REACHED)])
def test_paid_plan_refuses_at_its_session_limit(used, expected):
    st_ = standing(paid_sub(STARTER), T0 + DAY)
    assert st_.refusal(used) is expected


def test_paid_plan_custom_limit_is_the_cap():
    st_ = standing(paid_sub(STARTER, custom_limit=300), T0 + DAY)
    assert st_.refusal(299) is None
    assert st_.refusal(300) is Refusal.SESSION_LIMIT_REACHED


def test_trial_refuses_with_subscription_ended_when_out_of_sessions():
    st_ = standing(trial_sub(), T0 + DAY)
    assert st_.refusal(49) is None
    assert st_.refusal(50) is Refusal.SUBSCRIPTION_ENDED  # not a "session limit" on the trial


def test_trial_refuses_with_subscription_ended_when_out_of_days():
    st_ = standing(trial_sub(), T0 + 14 * DAY)
    assert st_.refusal(0) is Refusal.SUBSCRIPTION_ENDED
    assert standing(trial_sub(), T0 + 14 * DAY - timedelta(microseconds=1)).refusal(0) is None


def test_expired_paid_plan_refuses_with_subscription_ended_whatever_the_usage():
    st_ = standing(paid_sub(STARTER, status=Status.EXPIRED), T0 + DAY)
    assert st_.refusal(0) is Refusal.SUBSCRIPTION_ENDED


@fast
@given(used=usage)
def test_plan_without_limit_never_refuses_on_usage(used):
    assert standing(paid_sub(UNCAPPED), T0 + DAY).refusal(used) is None


subs = st.sampled_from(
    [
        trial_sub(),
        trial_sub(sessions=1),
        paid_sub(STARTER),
        paid_sub(OUTREACH, custom_limit=1),
        paid_sub(STARTER, status=Status.EXPIRED),
    ]
)


@fast
@given(sub=subs, elapsed=st.timedeltas(timedelta(0), timedelta(days=400)), used=usage)
def test_billing_disabled_means_the_gate_is_never_closed(sub, elapsed, used):
    st_ = standing(sub, T0 + elapsed, billing_enabled=False)
    assert st_.closed is None
    assert st_.cap is None
    assert st_.refusal(used) is None
    # It still counts in the same counter as with billing on.
    assert st_.counter == standing(sub, T0 + elapsed).counter
