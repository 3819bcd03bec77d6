"""Issue 13, finding 7: on SQLite, provider webhooks of one tenant are applied one at a time across
processes, under a lease held in the database (a Python lock orders only one process's)."""

from __future__ import annotations

import os
import threading

import pytest

from agentbilling.client import Billing
from agentbilling.storage.db import Database
from agentbilling.storage.leases import tenant_lease

ON_POSTGRES = os.environ.get("AGENTBILLING_TEST_DATABASE_URL", "").startswith("postgres")


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite only: PostgreSQL orders them by the subscription row's lock")
def test_webhook_application_waits_for_another_process_holding_the_tenant(billing: Billing, database_url: str) -> None:
    billing.create_tenant("acme", "Acme", "billing@acme.test")
    checkout = billing.checkout("acme", "starter", base_url="http://test")
    other = Database(database_url)  # another process, applying a webhook of the same tenant
    done = threading.Event()
    failed: list[BaseException] = []

    def pay() -> None:
        assert billing.sandbox is not None
        try:
            billing.sandbox.complete_checkout(checkout.id, "4242424242424242", billing.now())  # delivers its webhook
        except BaseException as exc:  # reported below
            failed.append(exc)
        finally:
            done.set()

    try:
        with tenant_lease(other, "acme"):
            payer = threading.Thread(target=pay)
            payer.start()
            assert not done.wait(0.7), failed  # the delivery waits for the other process's
            assert billing.billing_view("acme").cards[0].badge.value != "Active subscription"
        payer.join(timeout=15)
        assert done.is_set() and not failed, failed
        assert billing.billing_view("acme").cards[0].badge.value == "Active subscription"
        with tenant_lease(other, "acme"):  # given back: free again at once
            pass
    finally:
        other.dispose()
