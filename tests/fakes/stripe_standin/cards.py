"""Stripe's test cards and test payment-method tokens, and how each behaves when attached or charged."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import StripeError


@dataclass(frozen=True)
class TestCard:
    number: str
    brand: str
    decline_on_attach: str | None = None  # decline code when the card is refused at once
    decline_on_charge: str | None = None  # decline code for every charge (card accepted, charges fail)

    __test__ = False  # not a pytest test class

    @property
    def last4(self) -> str:
        return self.number[-4:]


_CARDS = [
    TestCard("4242424242424242", "visa"),
    TestCard("4000056655665556", "visa"),
    TestCard("5555555555554444", "mastercard"),
    TestCard("378282246310005", "amex"),
    TestCard("4000000000000341", "visa", decline_on_charge="generic_decline"),
    TestCard("4000000000000002", "visa", decline_on_attach="generic_decline"),
    TestCard("4000000000009995", "visa", decline_on_attach="insufficient_funds"),
]
CARDS = {c.number: c for c in _CARDS}

# Test payment-method ids (pm_card_*) and card tokens (tok_*) that stand for a card number.
TOKENS = {
    "pm_card_visa": "4242424242424242",
    "pm_card_mastercard": "5555555555554444",
    "pm_card_amex": "378282246310005",
    "pm_card_chargeCustomerFail": "4000000000000341",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "tok_visa": "4242424242424242",
    "tok_mastercard": "5555555555554444",
    "tok_amex": "378282246310005",
    "tok_chargeCustomerFail": "4000000000000341",
    "tok_chargeDeclined": "4000000000000002",
    "tok_chargeDeclinedInsufficientFunds": "4000000000009995",
}


def card_for_number(number: str) -> TestCard:
    """The behaviour of a card number; unknown numbers that pass the Luhn check succeed like 4242."""
    digits = "".join(ch for ch in str(number) if ch.isdigit())
    if digits in CARDS:
        return CARDS[digits]
    if len(digits) < 12 or not _luhn_ok(digits):
        raise StripeError(
            402, "Your card number is incorrect.", type="card_error", code="incorrect_number", param="number"
        )
    brand = {"4": "visa", "5": "mastercard", "3": "amex"}.get(digits[0], "unknown")
    return TestCard(digits, brand)


def card_for_token(token: str) -> TestCard | None:
    number = TOKENS.get(token)
    return CARDS[number] if number else None


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def refuse_if_declined(card: TestCard) -> None:
    """Raise the 402 a card refused at once gets (0002, 9995)."""
    if card.decline_on_attach:
        raise StripeError.card_declined(card.decline_on_attach)
