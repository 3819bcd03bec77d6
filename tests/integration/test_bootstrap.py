"""The wiring (agentbilling/bootstrap.py): one place picks the payment provider; importing the
package connects nothing and loads no service; the version comes from the package's metadata."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

from agentbilling import bootstrap
from agentbilling.clock import SystemClock, TestClock
from agentbilling.payments.sandbox.provider import SandboxProvider
from agentbilling.payments.stripe.provider import StripeProvider
from agentbilling.settings import Settings
from tests.support.service import START


def _services(settings: Settings, clock=None) -> bootstrap.Services:
    return bootstrap.build(settings, clock if clock is not None else TestClock(START), upgrade=False)


def test_the_sandbox_is_the_provider_unless_told_otherwise(settings):
    services = _services(settings)
    try:
        assert isinstance(services.provider, SandboxProvider) and services.sandbox is services.provider
        assert services.sandbox.deliver is not None  # its events reach the service as webhooks do
        assert services.secret == "test-secret-key"
    finally:
        services.webhooks.close()
        services.db.dispose()


def test_stripe_is_the_provider_when_configured_and_there_is_no_sandbox(settings):
    stripe = settings.model_copy(update={"payment_provider": "stripe", "stripe_api_key": "sk_test_x",
                                         "stripe_webhook_secret": "whsec_x"})
    services = _services(stripe)
    try:
        assert isinstance(services.provider, StripeProvider) and services.sandbox is None
        assert services.provider.test_clock  # the service's test clock moves Stripe's
    finally:
        services.webhooks.close()
        services.db.dispose()


def test_stripe_without_its_keys_is_refused(settings):
    stripe = settings.model_copy(update={"payment_provider": "stripe", "stripe_api_key": None})
    with pytest.raises(ValueError, match="AGENTBILLING_PAYMENT_PROVIDER=stripe needs"):
        _services(stripe)


def test_without_a_clock_the_system_clock_runs_unless_the_test_clock_is_on(settings):
    services = bootstrap.build(settings.model_copy(update={"test_clock": False}), upgrade=False)
    try:
        assert isinstance(services.clock, SystemClock) and services.clock_follower is None
    finally:
        services.webhooks.close()
        services.db.dispose()


def test_importing_the_package_loads_no_service_and_its_version_is_the_installed_one():
    probe = ("import sys, agentbilling; "
             "print(agentbilling.__version__, any(m in sys.modules for m in "
             "('agentbilling.client', 'agentbilling.bootstrap', 'sqlalchemy')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == [importlib.metadata.version("agentbilling"), "False"]
