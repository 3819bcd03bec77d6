"""The subscription repository: every save gives the row a new revision token, and the gate follows it."""

from __future__ import annotations

from sqlalchemy import select

from agentbilling.client import Billing
from agentbilling.storage.repositories.subscriptions import save_subscription
from agentbilling.storage.tables import subscriptions


def revision(billing: Billing, tenant_id: str) -> int:
    with billing.db.read() as conn:
        return conn.execute(select(subscriptions.c.revision).where(subscriptions.c.tenant_id == tenant_id)).scalar_one()


def test_a_save_writes_a_new_revision_and_the_gate_follows_it(billing: Billing) -> None:
    billing.create_tenant("acme", "Acme", "billing@acme.test")
    billing.put_subscription("acme", "starter")
    billing.set_session_limit("acme", 1000)
    for i in range(2):  # the standing is cached after the first (and, on PostgreSQL, the one statement runs)
        assert billing.open_session("acme", f"s-{i}", agent_id="a", direction="inbound").session is not None
    before = revision(billing, "acme")

    with billing.db.write() as conn:
        saved = save_subscription(conn, "acme", {"custom_limit": 2}, billing.now())

    assert saved == revision(billing, "acme") != before
    refused = billing.open_session("acme", "s-2", agent_id="a", direction="inbound")
    assert refused.session is None and refused.refusal is not None
    assert billing.metering.standing_and_usage("acme", billing.now())[1].cap == 2
