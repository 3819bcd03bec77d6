"""What the Stripe stand-in's own tests share (tests/fakes/stripe_standin/test_*.py)."""

from __future__ import annotations

from tests.support.service import START

SECRET = "whsec_test"

__all__ = ["SECRET", "START"]
