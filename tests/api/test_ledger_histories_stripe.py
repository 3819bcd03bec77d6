"""The ledger's invariants end to end on Stripe (through the stand-in and the official SDK): random
histories of a tenant's paid plan, then checked from what was stored here and at Stripe. Stripe
prorates fees itself, so what is checked is ours: every segment closed once and holding every
unit, the extras billed equal to the segments', nothing owed forgiven, one renewal per period.

AGENTBILLING_LEDGER_STRIPE_HISTORIES sets how many (default 200; each runs its own stand-in).
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import select

from agentbilling.domain.ledger import Segment
from agentbilling.domain.periods import Period
from agentbilling.storage.tables import invoices, segments, subscriptions, usage_counters
from tests.support.stripe import acme, billing, client, customer_of, standin  # noqa: F401 (fixtures)
from tests.support.subscribing import CARD_CHARGES_FAIL, CARD_OK, change_plan, checkout
from tests.support.tenants import advance, open_session

HISTORIES = int(os.environ.get("AGENTBILLING_LEDGER_STRIPE_HISTORIES", "200"))
PLANS = ["mini", "maxi", "reach"]
US = timedelta(microseconds=1)

pytestmark = pytest.mark.slow


def play(client, standin, billing, access, rng: random.Random) -> list[str]:
    did: list[str] = []
    co = checkout(client, access, rng.choice(PLANS)).json()
    standin.complete_checkout(co["id"], CARD_OK)
    customer = customer_of(billing, access.id)
    n = 0
    cancelled = False
    for _ in range(rng.randint(5, 12)):
        action = rng.choices(["sessions", "now", "later", "cancel", "bad card", "good card", "time"],
                             weights=[5, 3, 2, 1, 1, 2, 4])[0]
        if action == "sessions":
            for _ in range(rng.randint(1, 4)):
                n += 1
                open_session(client, access, f"s{n}")
        elif action == "now":
            r = change_plan(client, access, rng.choice(PLANS), "immediately")
            assert r.status_code in (200, 402, 409), r.text
            action += f" {r.status_code}"
        elif action == "later":
            day = (billing.now() + timedelta(days=rng.randint(1, 40))).date().isoformat()
            r = change_plan(client, access, rng.choice(PLANS), "custom_date", day)
            assert r.status_code in (200, 409), r.text
            action += f" {r.status_code}"
        elif action == "cancel" and not cancelled:
            standin.portal_cancel(customer)
            cancelled = True
        elif action in ("bad card", "good card"):
            standin.add_card(customer, CARD_CHARGES_FAIL if action == "bad card" else CARD_OK)
        elif action == "time":
            hours = rng.choice([5, 24, 200, 400, 700])
            advance(client, seconds=hours * 3600)
            action += f" {hours}h"
        standin.wait_for_webhooks()
        did.append(action)
    advance(client, seconds=70 * 86400)
    billing.run_due()
    standin.wait_for_webhooks()
    return did


def check(billing, access) -> None:
    with billing.db.read() as conn:
        invs = conn.execute(select(invoices).where(invoices.c.tenant_id == access.id)).mappings().all()
        segs = conn.execute(select(segments).where(segments.c.tenant_id == access.id)).mappings().all()
        counters = dict(conn.execute(select(usage_counters.c.period, usage_counters.c.billable_sessions)
                                     .where(usage_counters.c.tenant_id == access.id)).all())
        ended_at = conn.execute(select(subscriptions.c.ended_at)
                                .where(subscriptions.c.tenant_id == access.id)).scalar()
    now = billing.now()
    live = [i for i in invs if i["status"] != "void"]
    # Nothing owed is forgiven: the only voided invoice is a renewal Stripe made once the plan had lapsed.
    for inv in invs:
        if inv["status"] == "void":
            assert inv["kind"] == "renewal" and ended_at is not None and inv["created_at"] >= ended_at, inv
    owed = sum(i["total"] for i in invs if i["status"] == "open")
    v = billing.billing_view(access.id)
    assert (v.balance_due.amount if v.balance_due else 0) == owed

    by_period: dict = defaultdict(list)
    for s in segs:
        by_period[(s["period_start"], s["period_end"])].append(s)
    expected = 0
    for (start, end), rows in by_period.items():
        period = Period(start, end, 0)
        if end <= now:
            assert all(r["closed_by"] is not None for r in rows), rows
            assert sum(r["units"] for r in rows) == counters.get(period.key, 0)
        for r in rows:
            if r["closed_by"] is None:
                continue
            plan = billing.catalog[r["plan_id"]]
            seg = Segment(period, plan, r["start_at"], r["units_at_start"], r["end_at"], r["units"], r["closed_by"])
            part, whole = (seg.priced_until - seg.start) // US, (end - start) // US
            extra = max(0, r["units"] - plan.included_sessions * part // whole)
            expected += extra * (plan.overage_price.amount if plan.overage_price else 0)
    billed = sum(x["amount"] for i in live for x in i["lines"] if "sessions beyond the" in x["description"])
    assert billed == expected
    starts = [i["period_start"] for i in invs if i["kind"] == "renewal" and i["status"] != "void"]
    assert len(starts) == len(set(starts))


@pytest.mark.parametrize("seed", range(HISTORIES))
def test_a_random_stripe_history_bills_every_period_once_by_its_segments(client, standin, billing, acme, seed):
    did = play(client, standin, billing, acme, random.Random(seed))
    try:
        check(billing, acme)
    except AssertionError as err:
        raise AssertionError(f"seed {seed}: {' / '.join(did)}") from err
