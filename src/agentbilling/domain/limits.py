"""The tenant's session limit (R9) and the card's warnings."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from agentbilling.domain.errors import InvalidInput
from agentbilling.domain.plans import Plan

MAX_LIMIT = 10**12  # far above any plan; keeps every limit inside a 64-bit counter


class LimitWarning(StrEnum):
    ALMOST_REACHED = "Session limit almost reached"
    REACHED = "Session limit has been reached"


@dataclass(frozen=True, slots=True)
class SessionLimit:
    limit: int | None  # what applies now; None: no cap
    base_limit: int | None  # the plan's base limit
    used: int  # billable sessions this period
    custom: bool  # the tenant set its own

    @property
    def warning(self) -> LimitWarning | None:
        if self.limit is None:
            return None
        if self.used >= self.limit:
            return LimitWarning.REACHED
        if self.used * 5 >= self.limit * 4:
            return LimitWarning.ALMOST_REACHED
        return None


def effective_limit(plan: Plan, custom: int | None) -> int | None:
    """The tenant's own limit where set (never above the plan's highest), else the base limit."""
    if custom is None:
        return plan.base_session_limit
    if plan.max_session_limit is not None:
        return min(custom, plan.max_session_limit)
    return custom


def kept_limit(custom: int | None, new_plan: Plan) -> int | None:
    """A tenant's own limit survives a plan change, lowered to the new plan's highest (R8)."""
    if custom is None or new_plan.max_session_limit is None:
        return custom
    return min(custom, new_plan.max_session_limit)


def validate_limit(plan: Plan, value: object) -> int:
    """A whole number greater than zero and not above the plan's highest limit."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("The session limit must be a whole number.")
    if value <= 0:
        raise InvalidInput("The session limit must be greater than zero.")
    if value > MAX_LIMIT:
        raise InvalidInput(f"The session limit cannot be above {MAX_LIMIT:,}.")
    if plan.max_session_limit is not None and value > plan.max_session_limit:
        raise InvalidInput(
            f"The session limit cannot be above {plan.max_session_limit:,}, "
            f"the highest limit of the {plan.name} plan."
        )
    return value
