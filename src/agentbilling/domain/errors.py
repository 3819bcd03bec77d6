"""Domain errors: each names the rule it breaks with a stable code; no transport details."""

from __future__ import annotations


class DomainError(Exception):
    """A request the rules refuse. `code` is stable and ends problem `type` URIs."""

    code = "invalid-request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    code = "not-found"


class Conflict(DomainError):
    code = "conflict"


class InvalidInput(DomainError):
    code = "invalid-request"


class SessionLimitUnavailable(Conflict):
    code = "session-limit-unavailable"


class SessionEnded(Conflict):
    code = "session-ended"


class SessionIdReused(Conflict):
    code = "session-id-reused"


class AlreadyExists(Conflict):
    code = "already-exists"


class CardDeclined(DomainError):
    """The payment provider declined the card: nothing was charged, nothing changed."""

    code = "card-declined"


class PaymentFailed(DomainError):
    """A charge the change needed did not go through: nothing changed (R8)."""

    code = "payment-failed"


class BalanceDue(Conflict):
    """An ended plan left invoices unpaid: they are settled before a new plan starts (R10)."""

    code = "balance-due"

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.extra = extra


class CurrencyChange(Conflict):
    """A plan in another currency cannot replace the running one (R8a: credit stays in its currency)."""

    code = "currency-mismatch"
