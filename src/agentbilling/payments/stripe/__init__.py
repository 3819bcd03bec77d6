"""Stripe as the payment provider, through the official SDK."""
