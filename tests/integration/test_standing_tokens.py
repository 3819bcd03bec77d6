"""Issue 13, finding 2: revision numbers were reused, so a kept standing outlived its database.

A running service keeps each tenant's standing (cap, state, period key) with the revision of the
subscription row it came from. The database is then dropped, recreated and migrated under it (as a
restore, a failover to a lagging replica or a recreated database would do), and the same tenant
is set up again, through as many writes, with another limit and another period. The running
service must follow the new database: its limit, its period, its usage.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from agentbilling.client import Billing, connect
from agentbilling.clock import TestClock
from agentbilling.settings import Settings
from agentbilling.storage import migrate
from agentbilling.storage.db import Database
from agentbilling.storage.tables import metadata


def recreate(url: str) -> None:
    """Drop every table and migrate an empty database again (the running service's pools stay)."""
    db = Database(url)
    try:
        with db.write() as conn:
            metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        migrate.upgrade(db)
    finally:
        db.dispose()


@pytest.fixture
def other(settings: Settings, clock: TestClock) -> Iterator[Billing]:
    """Another process on the same database: it sets the tenant up again after the recreate."""
    service = connect(settings, clock=clock, upgrade=False)
    yield service
    service.close()


def set_up(service: Billing, limit: int) -> None:
    service.create_tenant("acme", "Acme", "billing@acme.test")
    service.put_subscription("acme", "starter")
    service.set_session_limit("acme", limit)


def test_standing_tokens_do_not_survive_a_recreated_database(
    billing: Billing, other: Billing, clock: TestClock, database_url: str
) -> None:
    set_up(billing, 10)
    for i in range(3):
        assert billing.open_session("acme", f"old-{i}", agent_id="a", direction="inbound").session is not None
    for i in range(3):  # the one statement too, on PostgreSQL (the standing is kept now)
        assert billing.open_session("acme", f"old-b{i}", agent_id="a", direction="inbound").session is not None

    recreate(database_url)
    clock.set(clock.now() + timedelta(days=3))  # the new subscription's period starts elsewhere
    set_up(other, 2)  # as many writes as before: a counter would be back at the same revision

    results = [billing.open_session("acme", f"new-{i}", agent_id="a", direction="inbound") for i in range(4)]
    assert [r.session is not None for r in results] == [True, True, False, False]
    _, st, used = billing.metering.standing_and_usage("acme", billing.now())
    assert (st.cap, used) == (2, 2)
    view = billing.billing_view("acme")
    assert view.session_limit.limit == 2 and view.session_limit.used == 2
    assert len(billing.list_sessions("acme").data) == 2
