"""Money as integer minor units and an ISO 4217 currency code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Money:
    amount: int  # minor units, e.g. cents
    currency: str  # ISO 4217, upper case

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise ValueError("amount must be an integer number of minor units")
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise ValueError(f"currency must be an ISO 4217 code like 'USD', got {self.currency!r}")

    def times(self, n: int) -> Money:
        return Money(self.amount * n, self.currency)
