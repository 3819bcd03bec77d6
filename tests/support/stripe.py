"""The service on the Stripe provider, for the tests that import these fixtures: the Stripe
stand-in, the service configured for it, served by a real uvicorn whose address the stand-in's
webhooks go to."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from agentbilling.api.app import create_app
from agentbilling.client import Billing, connect
from agentbilling.clock import TestClock
from agentbilling.settings import Settings
from agentbilling.storage.tables import subscriptions
from tests.fakes.stripe_standin import StripeStandin
from tests.support.service import OPERATOR_KEY, START, LiveServer
from tests.support.subscribing import STRIPE_PRICES, plans_file
from tests.support.tenants import TenantAccess, setup_tenant

SECRET = "whsec_stripe_test_secret"


@pytest.fixture
def standin() -> Iterator[StripeStandin]:
    with StripeStandin(webhook_url=None, webhook_secret=SECRET, start_time=START, prices=STRIPE_PRICES) as s:
        yield s


@pytest.fixture
def billing(database_url: str, tmp_path, standin: StripeStandin) -> Iterator[Billing]:
    settings = Settings(database_url=database_url, operator_key=OPERATOR_KEY, secret_key="test-secret-key",
                        test_clock=True, plans_file=plans_file(tmp_path), payment_provider="stripe",
                        stripe_api_key="sk_test_agentbilling", stripe_webhook_secret=SECRET,
                        stripe_api_base=standin.url)
    service = connect(settings, clock=TestClock(START), upgrade=False)
    yield service
    service.close()


@pytest.fixture
def client(billing: Billing, standin: StripeStandin) -> Iterator[httpx.Client]:
    with LiveServer(create_app(billing)) as server:
        standin.set_webhook(f"{server.url}/v1/webhooks/stripe", SECRET)
        with httpx.Client(base_url=server.url, timeout=60) as c:
            yield c


@pytest.fixture
def acme(client) -> TenantAccess:
    return setup_tenant(client, "acme")


def customer_of(billing: Billing, tenant_id: str) -> str:
    with billing.db.read() as conn:
        return conn.execute(select(subscriptions.c.provider_customer)
                            .where(subscriptions.c.tenant_id == tenant_id)).scalar_one()
