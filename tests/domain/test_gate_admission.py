"""R4 with R2: admissions decided in order, replays of an id, and which batches one count may admit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agentbilling.domain.errors import SessionIdReused
from agentbilling.domain.gate import (
    AdmissionRequest,
    OpenResult,
    Refusal,
    all_new_and_counted,
    decide_in_order,
    open_session,
    replay_of,
    uncounted_refusal,
)
from agentbilling.domain.metering import Direction
from agentbilling.domain.subscription import Status, standing
from tests.support.domain import DAY, OUTREACH, STARTER, T0, fast, paid_sub, trial_sub

NOW = T0 + DAY
IN, OUT = Direction.INBOUND, Direction.OUTBOUND


def ask(session_id: str, agent_id: str = "a1", direction: Direction = IN) -> AdmissionRequest:
    return AdmissionRequest(session_id, agent_id, direction)


def trial(sessions: int = 3):
    return standing(trial_sub(sessions=sessions), NOW)


def test_the_same_id_again_gives_the_first_answer():
    first = open_session(trial(), ask("s1"), T0)
    assert replay_of(first, "a1", IN) == OpenResult(first, replay=True)


def test_the_same_id_with_another_agent_or_direction_is_a_reused_id():
    first = open_session(trial(), ask("s1"), T0)
    assert isinstance(replay_of(first, "a2", IN), SessionIdReused)
    assert isinstance(replay_of(first, "a1", OUT), SessionIdReused)


def test_admissions_in_order_stop_at_the_cap_and_count_once():
    decided = decide_in_order(trial(3), [ask("s1"), ask("s2"), ask("s3")], [], used=1, now=NOW)
    assert [r.session.id if r.session else r.refusal for r in decided.results] == [
        "s1", "s2", Refusal.SUBSCRIPTION_ENDED]
    assert [s.id for s in decided.admitted] == ["s1", "s2"]
    assert decided.count == 3


def test_a_paid_plan_at_its_limit_refuses_with_the_limit_reason():
    decided = decide_in_order(standing(paid_sub(STARTER), NOW), [ask("s1"), ask("s2")], [], used=999, now=NOW)
    assert decided.results[0].session is not None
    assert decided.results[1] == OpenResult(None, refusal=Refusal.SESSION_LIMIT_REACHED)
    assert decided.count == 1000


def test_a_known_id_is_a_replay_even_at_the_cap_and_counts_nothing():
    first = open_session(trial(), ask("s1"), T0)
    decided = decide_in_order(trial(3), [ask("s1"), ask("s1", "a2")], [first], used=3, now=NOW)
    assert decided.results[0] == OpenResult(first, replay=True)
    assert isinstance(decided.results[1], SessionIdReused)
    assert decided.admitted == [] and decided.count is None


def test_an_id_twice_in_one_batch_is_admitted_once_then_replayed():
    decided = decide_in_order(trial(3), [ask("s1"), ask("s1")], [], used=0, now=NOW)
    assert decided.results[1] == OpenResult(decided.admitted[0], replay=True)
    assert decided.count == 1


def test_a_closed_gate_refuses_new_ids_but_replays_known_ones():
    ended = standing(paid_sub(STARTER, status=Status.CANCELED), NOW)
    first = open_session(ended, ask("s1"), T0)
    decided = decide_in_order(ended, [ask("s1"), ask("s2")], [first], used=0, now=NOW)
    assert decided.results == [OpenResult(first, replay=True), OpenResult(None, refusal=Refusal.SUBSCRIPTION_ENDED)]
    assert decided.count is None


def test_answered_only_outbound_is_admitted_uncounted_while_below_the_limit():
    outreach = standing(paid_sub(OUTREACH), NOW)
    assert uncounted_refusal(outreach, 3999) is None
    assert uncounted_refusal(outreach, 4000) is Refusal.SESSION_LIMIT_REACHED
    decided = decide_in_order(outreach, [ask("o1", direction=OUT), ask("o2", direction=OUT)], [], used=3999, now=NOW)
    assert [s.billable_sessions for s in decided.admitted] == [0, 0]
    assert decided.count is None  # counted when answered


def test_one_count_may_admit_a_batch_only_of_new_ids_each_counted_at_once():
    assert [s.id for s in all_new_and_counted(trial(), [ask("s1"), ask("s2")], NOW)] == ["s1", "s2"]
    assert all_new_and_counted(trial(), [ask("s1"), ask("s1")], NOW) is None
    assert all_new_and_counted(standing(paid_sub(OUTREACH), NOW), [ask("o1", direction=OUT)], NOW) is None
    assert all_new_and_counted(standing(paid_sub(OUTREACH), NOW), [ask("i1", direction=IN)], NOW) is not None
    assert all_new_and_counted(standing(paid_sub(STARTER, status=Status.CANCELED), NOW), [ask("s1")], NOW) is None


requests = st.lists(st.builds(ask, st.sampled_from(["s1", "s2", "s3", "s4", "s5"]), st.sampled_from(["a1", "a2"]),
                              st.sampled_from([IN, OUT])), max_size=12)


@fast
@given(batch=requests, cap=st.integers(0, 6), used=st.integers(0, 6), answered_only=st.booleans())
def test_in_order_never_passes_the_cap_and_admits_each_id_once(batch, cap, used, answered_only):
    st_ = standing(paid_sub(OUTREACH), NOW) if answered_only else trial(cap)
    decided = decide_in_order(st_, batch, [], used=used, now=NOW)
    assert len(decided.results) == len(batch)
    ids = [s.id for s in decided.admitted]
    assert len(ids) == len(set(ids))
    counted = sum(s.billable_sessions for s in decided.admitted)
    assert (decided.count is None) == (counted == 0)
    if st_.cap is not None and used < st_.cap:
        assert used + counted <= st_.cap
    elif st_.cap is not None:
        assert decided.admitted == []
