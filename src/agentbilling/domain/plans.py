"""Plans of the operator's catalog (R7) and the negotiated terms that can override them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from agentbilling.domain.money import Money

ANSWERED_ONLY = "Answered only"


@dataclass(frozen=True, slots=True)
class Terms:
    """An enterprise deal's own figures; a field left None keeps the plan's."""

    price: Money | None = None
    included_sessions: int | None = None
    overage_price: Money | None = None
    base_session_limit: int | None = None
    max_session_limit: int | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    name: str
    price: Money | None  # None: priced by negotiation (enterprise)
    included_sessions: int = 0
    overage_price: Money | None = None
    base_session_limit: int | None = None  # None: no cap
    max_session_limit: int | None = None  # None: any positive limit
    answered_only: bool = False
    details: tuple[str, ...] = ()
    provider_price_id: str | None = None
    available_to: frozenset[str] | None = None  # None: every tenant
    enterprise: bool = False

    @property
    def tags(self) -> tuple[str, ...]:
        return (ANSWERED_ONLY,) if self.answered_only else ()

    def available_for(self, tenant_id: str) -> bool:
        return self.available_to is None or tenant_id in self.available_to

    def with_terms(self, terms: Terms | None) -> Plan:
        if terms is None:
            return self
        changes = {f.name: getattr(terms, f.name) for f in dataclasses.fields(terms)}
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


class Catalog(Mapping[str, Plan]):
    """The plans a deployment offers, in the operator's order."""

    def __init__(self, plans: Iterable[Plan]) -> None:
        self._plans: dict[str, Plan] = {}
        for plan in plans:
            if plan.id in self._plans:
                raise ValueError(f"plan id {plan.id!r} appears twice")
            self._plans[plan.id] = plan

    def __getitem__(self, plan_id: str) -> Plan:
        return self._plans[plan_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._plans)

    def __len__(self) -> int:
        return len(self._plans)

    def available_for(self, tenant_id: str) -> list[Plan]:
        return [p for p in self._plans.values() if p.available_for(tenant_id)]
