"""Safeguards found in review: a zero cap is a cap, and a crashed request does not hold its Idempotency-Key forever."""

from datetime import UTC, datetime, timedelta

import pytest

from agentbilling.domain.errors import InvalidInput
from agentbilling.domain.plans import Terms
from agentbilling.storage.repositories.idempotency import STALE_AFTER, IdempotencyStore


def test_terms_with_a_limit_of_zero_are_refused_rather_than_read_as_no_limit(billing, tenant):
    with pytest.raises(InvalidInput, match="greater than zero"):
        billing.put_subscription(tenant, "enterprise", Terms(base_session_limit=0, max_session_limit=1))
    assert billing.billing_view(tenant).cards[0].badge.value == "Trial subscription"  # nothing changed


def test_an_idempotency_key_left_in_progress_by_a_dead_request_is_taken_over(billing):
    store = IdempotencyStore(billing.db)
    then = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    assert store.claim("caller", "key-1", "hash-a", then).state == "new"  # then the process died
    assert store.claim("caller", "key-1", "hash-a", then + timedelta(seconds=5)).state == "in_progress"
    later = then + STALE_AFTER + timedelta(seconds=1)
    assert store.claim("caller", "key-1", "hash-a", later).state == "new"
    assert store.claim("caller", "key-1", "hash-a", later).state == "in_progress"  # taken once, not twice
    store.save("caller", "key-1", 201, "application/json", b'{"ok":true}')
    replay = store.claim("caller", "key-1", "hash-a", later + STALE_AFTER * 10)
    assert (replay.state, replay.status_code, replay.body) == ("replay", 201, b'{"ok":true}')
