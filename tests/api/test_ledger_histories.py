"""The ledger's invariants end to end: random histories of a tenant's paid plan played over HTTP
with the sandbox and the test clock (sessions, limits, changes in all three modes, cancel and
resume, failing and working cards, late payments, a new plan after one ended), then checked from
what was stored. Each history is one seeded test case: a failure names its seed.

AGENTBILLING_LEDGER_HISTORIES sets how many (default 200).
"""

from __future__ import annotations

import os
import random
from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import select

from agentbilling.domain import ledger
from agentbilling.domain.ledger import Segment
from agentbilling.domain.periods import Period
from agentbilling.storage.tables import credit_balances, invoices, segments, usage_counters
from tests.support.http import view
from tests.support.subscribing import (  # noqa: F401 (settings and acme are fixtures)
    CARD_CHARGES_FAIL,
    CARD_OK,
    acme,
    add_card,
    change_plan,
    checkout,
    complete,
    portal_action,
    settings,
)
from tests.support.tenants import advance, open_session

HISTORIES = int(os.environ.get("AGENTBILLING_LEDGER_HISTORIES", "200"))
USD_PLANS = ["mini", "maxi", "reach"]
US = timedelta(microseconds=1)


def play(client, billing, access, rng: random.Random) -> list[str]:
    """A random history; returns what it did (printed when an invariant fails)."""
    did: list[str] = []
    plan = rng.choice(USD_PLANS + ["euro"])
    co = checkout(client, access, plan).json()
    assert complete(client, co["id"]).status_code == 200
    did.append(f"subscribe {plan}")
    n = 0
    for _ in range(rng.randint(6, 16)):
        action = rng.choices(["sessions", "limit", "now", "later", "cancel", "resume", "bad card", "good card",
                              "time", "resubscribe"], weights=[5, 1, 3, 2, 1, 1, 1, 2, 5, 1])[0]
        if action == "sessions":
            for _ in range(rng.randint(1, 4)):
                n += 1
                open_session(client, access, f"s{n}")
        elif action == "limit":
            client.put("/v1/billing/session-limit", json={"limit": rng.randint(1, 10)}, headers=access.owner_headers)
        elif action == "now":
            r = change_plan(client, access, rng.choice(USD_PLANS + ["euro"]), "immediately")
            assert r.status_code in (200, 402, 409), r.text
            action += f" {r.status_code}"
        elif action == "later":
            target = rng.choice(USD_PLANS)
            if rng.random() < 0.5:
                r = change_plan(client, access, target, "end_of_period")
            else:
                day = (billing.now() + timedelta(days=rng.randint(1, 50))).date().isoformat()
                r = change_plan(client, access, target, "custom_date", day)
            assert r.status_code in (200, 409), r.text
            action += f" {target} {r.status_code}"
        elif action in ("cancel", "resume"):
            portal_action(client, access.id, action)
        elif action == "bad card":
            add_card(client, access.id, CARD_CHARGES_FAIL)
        elif action == "good card":
            add_card(client, access.id, CARD_OK)
        elif action == "time":
            hours = rng.choice([1, 5, 24, 72, 200, 400, 700])
            advance(client, seconds=hours * 3600)
            action += f" {hours}h"
        else:
            r = checkout(client, access, rng.choice(USD_PLANS))
            if r.status_code == 200:
                complete(client, r.json()["id"])
            action += f" {r.status_code}"
        did.append(action)
    advance(client, seconds=70 * 86400)  # every period begun has ended since
    return did


def check(billing, access) -> None:
    c_i, c_s = invoices.c, segments.c
    with billing.db.read() as conn:
        invs = conn.execute(select(invoices).where(c_i.tenant_id == access.id)).mappings().all()
        segs = conn.execute(select(segments).where(c_s.tenant_id == access.id)).mappings().all()
        counters = dict(conn.execute(select(usage_counters.c.period, usage_counters.c.billable_sessions)
                                     .where(usage_counters.c.tenant_id == access.id)).all())
        credit = dict(conn.execute(select(credit_balances.c.currency, credit_balances.c.amount)
                                   .where(credit_balances.c.tenant_id == access.id)).all())
    now = billing.now()
    live = [i for i in invs if i["status"] != "void"]

    # No debt disappears: only an upgrade whose charge failed is ever voided.
    assert all(i["change_plan_id"] is not None for i in invs if i["status"] == "void")
    owed = sum(i["total"] for i in invs if i["status"] == "open" and i["change_plan_id"] is None)
    due = view_balance(billing, access)
    assert due == owed

    # Segments: what each period's fees and extras must add up to.
    by_period: dict = defaultdict(list)
    for s in segs:
        by_period[(s["period_start"], s["period_end"])].append(s)
    expected_extras = 0
    fees = 0
    for (start, end), rows in by_period.items():
        period = Period(start, end, 0)
        if end <= now:  # ended: each of its segments closed, holding all its units between them
            assert all(r["closed_by"] is not None for r in rows), rows
            assert sum(r["units"] for r in rows) == counters.get(period.key, 0)
        for r in rows:
            plan = billing.catalog[r["plan_id"]]
            seg = Segment(period, plan, r["start_at"], r["units_at_start"], r["end_at"], r["units"], r["closed_by"])
            fees += ledger.segment_fee(seg)  # billed ahead, for the running period too
            if r["closed_by"] is None:
                continue
            part, whole = (seg.priced_until - seg.start) // US, (end - start) // US
            extra = max(0, r["units"] - plan.included_sessions * part // whole)
            expected_extras += extra * (plan.overage_price.amount if plan.overage_price else 0)
    lines = [x for i in live for x in i["lines"]]
    assert sum(x["amount"] for x in lines if "sessions beyond the" in x["description"]) == expected_extras
    billed_fees = sum(x["amount"] for x in lines if " plan, " in x["description"] or "prorated" in x["description"])
    assert billed_fees == fees

    # Each period is billed once: one renewal per new period, one final invoice per ended one.
    assert all(n == 1 for n in Counter((i["kind"], i["period_start"]) for i in invs
                                       if i["kind"] in ("renewal", "final")).values())

    # Credit is kept per currency: what credit notes gave in a currency, less what paid invoices in it.
    granted: dict[str, int] = defaultdict(int)
    for i in live:
        if i["total"] < 0:
            granted[i["currency"]] += -i["total"]
        for x in i["lines"]:
            if x["description"] == ledger.CREDIT_LINE:
                granted[i["currency"]] += x["amount"]
    assert {k: v for k, v in granted.items() if v} == credit


def view_balance(billing, access) -> int:
    v = billing.billing_view(access.id)
    return v.balance_due.amount if v.balance_due else 0


@pytest.mark.parametrize("seed", range(HISTORIES))
def test_a_random_history_bills_every_period_once_by_its_segments(client, billing, acme, seed):
    rng = random.Random(seed)
    did = play(client, billing, acme, rng)
    try:
        check(billing, acme)
    except AssertionError as err:
        raise AssertionError(f"seed {seed}: {' / '.join(did)}") from err
    assert view(client, acme)["cards"]
