"""The worker and the work that comes due, under concurrency and failure: a renewal is made and
charged once however many workers run at its moment; a webhook delivered by many at once is
applied once; a provider event whose delivery failed is delivered by the next pass."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from agentbilling.client import Billing
from agentbilling.storage.tables import invoices, provider_events, sandbox_charges, sandbox_events, subscriptions
from agentbilling.usecases import test_clock as clocks
from agentbilling.worker import Worker
from tests.support.concurrency import at_once
from tests.support.service import START

CLI = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "agentbilling"
FEB_28 = START.replace(month=2, day=28)


def subscribed(billing: Billing, tenant_id: str = "acme", plan: str = "starter") -> None:
    billing.create_tenant(tenant_id, tenant_id.title(), f"billing@{tenant_id}.test")
    co = billing.checkout(tenant_id, plan)
    billing.sandbox_complete_checkout(co.id, "4242424242424242")


def count(billing: Billing, query) -> int:
    with billing.db.read() as conn:
        return conn.execute(query).scalar_one()


def renewals(billing: Billing) -> int:
    return count(billing, select(func.count()).select_from(invoices).where(invoices.c.kind == "renewal"))


def charges(billing: Billing) -> int:
    return count(billing, select(func.count()).select_from(sandbox_charges))


def test_many_workers_at_the_renewal_moment_make_and_charge_it_once(billing: Billing):
    for i in range(3):
        subscribed(billing, f"t{i}")
    assert charges(billing) == 3  # the first invoices, paid at checkout
    billing.test_clock.set(FEB_28)  # time passes; nothing has run yet
    for _ in range(3):  # rounds, so that some runs overlap mid-way
        assert at_once(6, lambda: billing.lifecycle.run_due(FEB_28)) == []
    assert renewals(billing) == 3
    assert charges(billing) == 6
    with billing.db.read() as conn:
        statuses = conn.execute(select(invoices.c.status, invoices.c.attempts)
                                .where(invoices.c.kind == "renewal")).all()
    assert sorted(statuses) == [("paid", 1)] * 3


def test_the_same_webhook_delivered_by_many_at_once_is_applied_once(billing: Billing):
    billing.create_tenant("acme", "Acme", "billing@acme.test")
    co = billing.checkout("acme", "starter")
    sandbox = billing.sandbox
    deliver, sandbox.deliver = sandbox.deliver, None  # hold the delivery
    billing.sandbox_complete_checkout(co.id, "4242424242424242")
    sandbox.deliver = deliver
    with billing.db.read() as conn:
        (event_id, body), = conn.execute(select(sandbox_events.c.id, sandbox_events.c.body)
                                         .where(sandbox_events.c.delivered_at.is_(None))).all()
    outcomes: list[str] = []
    errors = at_once(8, lambda: outcomes.append(billing.receive_webhook("sandbox", body.encode(),
                                                                         sandbox.sign(event_id, body))))
    assert errors == []
    assert sorted(outcomes) == ["applied"] + ["duplicate"] * 7
    assert count(billing, select(func.count()).select_from(provider_events)) == 1
    assert count(billing, select(func.count()).select_from(invoices)) == 1  # the first invoice, once
    assert billing.billing_view("acme").cards[0].badge.value == "Active subscription"


def test_an_event_whose_delivery_failed_is_delivered_by_the_next_pass(billing: Billing):
    billing.create_tenant("acme", "Acme", "billing@acme.test")
    co = billing.checkout("acme", "starter")
    sandbox = billing.sandbox
    deliver = sandbox.deliver

    def unreachable(body, headers):
        raise ConnectionError("the receiver is down")

    sandbox.deliver = unreachable
    billing.sandbox_complete_checkout(co.id, "4242424242424242")  # paid at the provider; we heard nothing
    assert billing.billing_view("acme").cards[0].badge.value == "Trial subscription"
    sandbox.deliver = deliver
    billing.run_due()
    assert billing.billing_view("acme").cards[0].badge.value == "Active subscription"
    assert count(billing, select(func.count()).select_from(sandbox_events)
                 .where(sandbox_events.c.delivered_at.is_(None))) == 0


def test_a_worker_thread_applies_what_comes_due_without_being_asked(billing: Billing):
    subscribed(billing)
    billing.test_clock.set(FEB_28 + timedelta(hours=1))
    worker = Worker(billing, interval=0.05).start()
    try:
        deadline = time.monotonic() + 30
        while renewals(billing) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert renewals(billing) == 1
    assert worker.passes >= 1


def test_a_failing_pass_does_not_stop_the_worker(billing: Billing, monkeypatch):
    calls = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the database went away for a moment")

    monkeypatch.setattr(billing, "run_due", flaky)
    worker = Worker(billing, interval=0.01).start()
    deadline = time.monotonic() + 10
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert len(calls) >= 3


def test_agentbilling_worker_once_runs_a_pass_and_exits(database_url: str, billing: Billing):
    subscribed(billing)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBILLING_")}
    env.update(AGENTBILLING_DATABASE_URL=database_url, AGENTBILLING_SECRET_KEY="test-secret-key",
               AGENTBILLING_TEST_CLOCK="1")
    # The stored test clock (which the process reads) moved past the renewal, with nothing run.
    clocks.move(billing.db, billing.test_clock, FEB_28 + timedelta(hours=1))
    assert renewals(billing) == 0
    done = subprocess.run([str(CLI), "worker", "--once"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "a pass every" in done.stdout
    assert renewals(billing) == 1


def test_a_tenant_in_a_payment_failure_is_revisited_only_when_something_is_due(billing: Billing):
    """Finding 8 of issue 13: a failed renewal used to make every later pass rewrite the tenant."""
    billing.create_tenant("acme", "Acme", "billing@acme.test")
    co = billing.checkout("acme", "starter")
    billing.sandbox_complete_checkout(co.id, "4242424242424242")
    billing.sandbox_add_payment_method("acme", "4000000000000341")  # its charges fail
    assert billing.lifecycle.run_due(FEB_28) == 1  # the renewal, whose charge fails
    assert billing.billing_view("acme").cards[0].badge.value == "Payment issue"

    def revision() -> int:
        with billing.db.read() as conn:
            return conn.execute(select(subscriptions.c.revision)
                                .where(subscriptions.c.tenant_id == "acme")).scalar_one()

    before = revision()
    for hours in (1, 30, 200):  # retries come and fail; nothing about the plan itself is due
        assert billing.lifecycle.run_due(FEB_28 + timedelta(hours=hours)) == 0
    assert revision() == before
    # The period the failure fell in ends: the plan lapses (R10), in the pass that reaches it.
    lapse = billing.lifecycle.run_due(START.replace(month=3, day=31))
    assert lapse == 1
    assert billing.billing_view("acme").cards[0].badge.value != "Active subscription"
