"""The one exception the stand-in raises for API errors, rendered in Stripe's error shape."""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """An API error: HTTP status plus Stripe's `{"error": {...}}` body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.decline_code = decline_code

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        if self.decline_code:
            error["decline_code"] = self.decline_code
        return {"error": error}

    @classmethod
    def invalid(cls, message: str, *, param: str | None = None, code: str | None = None) -> StripeError:
        return cls(400, message, param=param, code=code)

    @classmethod
    def missing(cls, kind: str, object_id: str, param: str = "id") -> StripeError:
        return cls(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)

    @classmethod
    def unauthorized(cls, message: str) -> StripeError:
        return cls(401, message)

    @classmethod
    def card_declined(cls, decline_code: str = "generic_decline", message: str | None = None) -> StripeError:
        return cls(
            402,
            message or _DECLINE_MESSAGES.get(decline_code, "Your card was declined."),
            type="card_error",
            code="card_declined",
            decline_code=decline_code,
            param="",
        )


_DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
}
