"""Subscribe: a checkout in the provider's billing portal, the portal's link, and an offline deal
that puts a tenant on a plan without the provider."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from agentbilling.domain.errors import BalanceDue, Conflict, InvalidInput, NotFound
from agentbilling.domain.plans import Terms
from agentbilling.domain.subscription import TRIAL_COUNTER, Status, start_plan
from agentbilling.payments.provider import Checkout
from agentbilling.storage.repositories.ledger import amounts_text
from agentbilling.storage.rows import terms_to_json
from agentbilling.storage.tables import subscriptions, tenants
from agentbilling.usecases.paid_plans import PaidPlans
from agentbilling.usecases.provider_commands import run_commands
from agentbilling.usecases.subscriptions import load, load_for_write, offered, save, stop_retries


def checkout(billing: PaidPlans, tenant_id: str, plan_id: object, now: datetime, base_url: str) -> Checkout:
    """Open a checkout for a plan in the secure billing portal. Completing it (the provider's
    webhook) starts the plan and ends the trial."""
    plan = offered(billing, tenant_id, plan_id)
    if plan.enterprise or plan.price is None:
        raise InvalidInput(f"The {plan.name} plan is arranged with us: use Book a demo.")
    with billing.db.read() as conn:
        sub, row = load(billing, conn, tenant_id, now)
        email = conn.execute(select(tenants.c.billing_email).where(tenants.c.id == tenant_id)).scalar()
    if sub.paid and sub.status is Status.ACTIVE:
        raise Conflict("You already have a paid subscription: change your plan instead of subscribing again.")
    with billing.db.read() as conn:
        owed = billing.book.balances_due(conn, tenant_id)
    if owed:
        # R10: what the ended plan left unpaid is settled before a new one starts.
        raise BalanceDue(f"{amounts_text(owed)} is still owed for your earlier plan. Settle it in the billing portal "
                         "(Manage), then subscribe again.",
                         pay_url=billing.provider.portal_url(tenant_id, base_url, customer=row["provider_customer"]),
                         balance_due=[{"amount": m.amount, "currency": m.currency} for m in owed])
    co = billing.provider.create_checkout(tenant_id, plan, now, base_url, customer=row["provider_customer"],
                                          email=email)
    if co.customer and co.customer != row["provider_customer"]:
        with billing.db.write() as conn:
            conn.execute(update(subscriptions).where(subscriptions.c.tenant_id == tenant_id)
                         .values(provider_customer=co.customer))
    return co


def portal_url(billing: PaidPlans, tenant_id: str, now: datetime, base_url: str) -> str:
    with billing.db.read() as conn:
        _, row = load(billing, conn, tenant_id, now)
    return billing.provider.portal_url(tenant_id, base_url, customer=row["provider_customer"])


def put_on_plan(billing: PaidPlans, tenant_id: str, plan_id: str, terms: Terms | None, now: datetime) -> None:
    """An offline deal: monthly periods from now, renewed without the provider; ends a trial."""
    catalog_plan = billing.catalog.get(plan_id)
    if catalog_plan is None:
        raise NotFound(f"No plan {plan_id!r}.")
    plan = catalog_plan.with_terms(terms)
    base, top = plan.base_session_limit, plan.max_session_limit
    if any(v is not None and v <= 0 for v in (base, top)):
        raise InvalidInput("Session limits must be greater than zero.")
    if base is not None and top is not None and base > top:
        raise InvalidInput("The base session limit cannot be above the highest session limit.")
    with billing.db.write() as conn:
        sub, row = load_for_write(billing, conn, tenant_id, now)
        started = start_plan(sub, plan, now, used=billing.book.counter(conn, tenant_id, TRIAL_COUNTER), offline=True)
        # The plan the provider ran is over: what it left unpaid stays owed but is not retried,
        # its period is closed (on a final invoice, or by the provider), and no checkout left open
        # can start another.
        stop_retries(conn, tenant_id)
        billing.mode.plan_replaced(billing, conn, row, sub, now)
        save(billing, conn, started, now, row, terms=terms_to_json(terms), provider=None, provider_customer=None,
             provider_subscription=None, billed_until=None, previous_plan_id=None, plan_changed_at=None)
    run_commands(billing, now)
