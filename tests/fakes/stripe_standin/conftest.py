"""Fixtures for the stand-in's own tests: a receiver, the stand-in sending to it, an SDK client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from tests.support.standin import SECRET, START

from . import StripeStandin
from .receiver import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as r:
        yield r


@pytest.fixture
def standin(receiver: WebhookReceiver) -> Iterator[StripeStandin]:
    with StripeStandin(webhook_url=receiver.url, webhook_secret=SECRET, start_time=START,
                       prices=[{"id": "price_starter", "unit_amount": 4900, "product_name": "Starter"},
                               {"id": "price_pro", "unit_amount": 19900, "product_name": "Pro"}]) as s:
        yield s


@pytest.fixture
def sdk(standin: StripeStandin) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_123", base_addresses={"api": standin.url}, max_network_retries=0)
