"""A local stand-in for Stripe's API (prices, customers, Checkout, portal, subscriptions, schedules,
invoices, test clocks) that sends Stripe-signed webhooks, for testing the Stripe provider.

    from tests.fakes.stripe_standin import StripeStandin

    with StripeStandin(webhook_url=receiver_url, webhook_secret="whsec_test") as s:
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": s.url})
        # or, module-level: stripe.api_key = "sk_test_x"; stripe.api_base = s.url

See README.md in this folder for what is supported.
"""

from .cards import CARDS, TOKENS
from .errors import StripeError
from .server import StripeStandin
from .webhooks import sign

__all__ = ["CARDS", "TOKENS", "StripeError", "StripeStandin", "sign"]
