"""Usage counters: the trial and each paid period count apart, whatever the clock says (R3, R6)."""

from agentbilling.domain.plans import Terms


def test_subscribing_at_the_instant_the_trial_started_starts_a_fresh_count(billing, tenant):
    for i in range(3):
        assert billing.open_session(tenant, f"trial-{i}", agent_id="a", direction="inbound").refusal is None
    view = billing.put_subscription(tenant, "starter")  # the test clock has not moved
    assert view.cards[0].sessions_count == 0
    assert view.session_limit is not None and view.session_limit.used == 0


def test_a_trial_session_answered_after_subscribing_counts_in_the_paid_period(billing, tenant):
    billing.open_session(tenant, "conv", agent_id="a", direction="inbound")
    billing.advance_clock(seconds=3600)
    billing.put_subscription(tenant, "enterprise", Terms(base_session_limit=10, max_session_limit=10))
    billing.advance_clock(seconds=30 * 3600)
    assert billing.record_message(tenant, "conv", "customer").billable_sessions == 2
    assert billing.billing_view(tenant).cards[0].sessions_count == 1  # the second window, recognised now
