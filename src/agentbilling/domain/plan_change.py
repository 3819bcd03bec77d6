"""Plan changes (R8): which plan a tenant may switch to, and when the change applies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from agentbilling.domain.errors import Conflict, InvalidInput, NotFound
from agentbilling.domain.periods import Period
from agentbilling.domain.plans import Plan

MAX_AHEAD = timedelta(days=366)  # "at most a year ahead"; a leap year's Feb 29 still fits


class When(StrEnum):
    IMMEDIATELY = "immediately"
    END_OF_PERIOD = "end_of_period"
    CUSTOM_DATE = "custom_date"


@dataclass(frozen=True, slots=True)
class PlanChange:
    plan: Plan
    effective_at: datetime

    def starts_on(self) -> date:
        return self.effective_at.date()


def check_target(tenant_id: str, current: Plan, target: Plan) -> None:
    """The plan to switch to must be offered to this tenant, paid through the portal, and another one."""
    if not target.available_for(tenant_id):
        raise NotFound(f"No plan {target.id!r}.")
    if target.enterprise or target.price is None:
        raise InvalidInput(f"The {target.name} plan is arranged with us: use Book a demo.")
    if target.id == current.id:
        raise Conflict(f"You are already on the {current.name} plan.")


def effective_at(when: When, *, now: datetime, period: Period, custom: date | None = None) -> datetime:
    """The instant a change applies: now, the period's end, or 00:00 UTC of a future date within a year."""
    if when is When.IMMEDIATELY:
        return now
    if when is When.END_OF_PERIOD:
        return period.end
    if custom is None:
        raise InvalidInput("On custom date needs a date (YYYY-MM-DD).")
    moment = datetime.combine(custom, time(0, 0), tzinfo=UTC)
    if moment <= now:
        raise InvalidInput(f"{custom.isoformat()} is not in the future: pick a later date.")
    if moment > now + MAX_AHEAD:
        raise InvalidInput(f"{custom.isoformat()} is more than a year ahead: pick an earlier date.")
    return moment
