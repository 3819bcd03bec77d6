"""An invoice's lines and total in minor units (what each invoice charges is domain/ledger.py's)."""

from __future__ import annotations

from dataclasses import dataclass

from agentbilling.domain.money import Money


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    description: str
    quantity: int
    unit_amount: int  # minor units
    amount: int


@dataclass(frozen=True, slots=True)
class InvoiceDraft:
    currency: str
    lines: tuple[InvoiceLine, ...]

    @property
    def total(self) -> Money:
        return Money(sum(line.amount for line in self.lines), self.currency)
