"""The admission gate (R4): whether agents may start a new session now, and why not."""

from __future__ import annotations

from enum import Enum


class Refusal(Enum):
    """A closed gate's reason: the problem `type` suffix and the exact message users see."""

    SUBSCRIPTION_ENDED = (
        "subscription-ended",
        "Your subscription has ended. Please upgrade your plan to continue.",
    )
    PAYMENT_OVERDUE = (
        "payment-overdue",
        "Your payment is overdue and the grace period has expired.",
    )
    SESSION_LIMIT_REACHED = ("session-limit-reached", "Session limit has been reached")

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message


def refusal(*, closed: Refusal | None, cap: int | None, cap_refusal: Refusal, used: int) -> Refusal | None:
    """Closed outright, or closed because the counter reached its cap; None when open."""
    if closed is not None:
        return closed
    if cap is not None and used >= cap:
        return cap_refusal
    return None
