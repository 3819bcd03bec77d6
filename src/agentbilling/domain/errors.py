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
