"""Reads and validates a plan catalog file into domain plans, with errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentbilling.domain.money import Money
from agentbilling.domain.plans import ANSWERED_ONLY, Catalog, Plan

PlanId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
Count = Annotated[int, Field(strict=True, ge=0)]
Positive = Annotated[int, Field(strict=True, gt=0)]


class CatalogError(ValueError):
    """The catalog file is missing, not JSON, or breaks a rule; the message says where."""


class MoneyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Count
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]

    def to_domain(self) -> Money:
        return Money(self.amount, self.currency)


class PlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: PlanId
    name: Annotated[str, Field(min_length=1, max_length=100)]
    enterprise: bool = False
    price: MoneyIn | None = None
    included_sessions: Count = 0
    overage_price: MoneyIn | None = None
    base_session_limit: Positive | None = None
    max_session_limit: Positive | None = None
    tags: list[Literal["Answered only"]] = []
    details: list[str] = []
    provider_price_id: str | None = None
    available_to: list[str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PlanIn:
        if not self.enterprise:
            missing = [f for f in ("price", "base_session_limit", "max_session_limit") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"a plan that is not enterprise needs {', '.join(missing)}")
        if self.base_session_limit and self.max_session_limit and self.base_session_limit > self.max_session_limit:
            raise ValueError("base_session_limit is above max_session_limit")
        if self.price and self.overage_price and self.price.currency != self.overage_price.currency:
            raise ValueError("price and overage_price are in different currencies")
        return self

    def to_domain(self) -> Plan:
        return Plan(
            id=self.id,
            name=self.name,
            price=self.price.to_domain() if self.price else None,
            included_sessions=self.included_sessions,
            overage_price=self.overage_price.to_domain() if self.overage_price else None,
            base_session_limit=self.base_session_limit,
            max_session_limit=self.max_session_limit,
            answered_only=ANSWERED_ONLY in self.tags,
            details=tuple(self.details),
            provider_price_id=self.provider_price_id,
            available_to=frozenset(self.available_to) if self.available_to is not None else None,
            enterprise=self.enterprise,
        )


class CatalogIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plans: Annotated[list[PlanIn], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> CatalogIn:
        ids = [p.id for p in self.plans]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"plan ids appear more than once: {', '.join(dupes)}")
        if "trial" in ids:
            raise ValueError("'trial' is reserved for the free trial")
        return self


def default_catalog_path() -> Path:
    return Path(__file__).with_name("default_plans.json")


def load_catalog(path: str | Path | None = None) -> Catalog:
    path = Path(path) if path else default_catalog_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"plan catalog {path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise CatalogError(f"plan catalog {path}: not valid JSON ({exc})") from None
    try:
        parsed = CatalogIn.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        ]
        raise CatalogError(f"plan catalog {path} is not valid:\n" + "\n".join(lines)) from None
    return Catalog(p.to_domain() for p in parsed.plans)
