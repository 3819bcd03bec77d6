"""Request bodies (Pydantic) and the JSON shapes of responses."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from babel.numbers import format_currency, get_currency_precision
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from agentbilling.catalog.loader import MoneyIn
from agentbilling.domain.card import Banner, Card
from agentbilling.domain.limits import MAX_LIMIT, SessionLimit
from agentbilling.domain.metering import Session
from agentbilling.domain.money import Money
from agentbilling.domain.plans import Plan, Terms
from agentbilling.usecases.results import Admission, BillingView, DemoRequest, Invoice, NoticeRecord, Tenant, User

LOCALE = "en_US"

# Control characters (C0, DEL, C1; NUL included) are refused in every id, name and email (422):
# PostgreSQL cannot store a NUL, and none of them belongs in an identifier.
_CTRL = r"\x00-\x1f\x7f-\x9f"


def _printable(forbidden: str = "") -> str:
    """A pattern: no control character (nor any of `forbidden`), and not only whitespace."""
    return rf"^[^{_CTRL}{forbidden}]*[^\s{_CTRL}{forbidden}][^{_CTRL}{forbidden}]*$"


Id = Annotated[str, Field(min_length=1, max_length=200, pattern=_printable())]
# A user id is a path segment of the operator API: a `/` would make the user unaddressable.
UserIdField = Annotated[str, Field(min_length=1, max_length=200, pattern=_printable("/"))]
TenantIdField = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Email = Annotated[str, Field(min_length=3, max_length=320, pattern=rf"^[^@\s{_CTRL}]+@[^@\s{_CTRL}]+$")]
Role = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_-]*$")]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=_printable())]
PlanIdField = Annotated[str, Field(min_length=1, max_length=64, pattern=_printable())]
# Free text (a demo request's message) may have line breaks and tabs, but no other control character.
FreeText = Annotated[str, Field(max_length=2000, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$")]
PositiveInt = Annotated[StrictInt, Field(gt=0, le=MAX_LIMIT)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests ---------------------------------------------------------------------------

class TenantIn(Strict):
    id: TenantIdField
    name: Name
    billing_email: Email


class TenantPatch(Strict):
    name: Name | None = None
    billing_email: Email | None = None


class UserIn(Strict):
    id: UserIdField
    email: Email
    role: Role


class UserPatch(Strict):
    email: Email | None = None
    role: Role | None = None


class TermsIn(Strict):
    price: MoneyIn | None = None
    included_sessions: Annotated[StrictInt, Field(ge=0)] | None = None
    overage_price: MoneyIn | None = None
    base_session_limit: PositiveInt | None = None
    max_session_limit: PositiveInt | None = None

    def to_domain(self) -> Terms:
        return Terms(
            price=self.price.to_domain() if self.price else None,
            included_sessions=self.included_sessions,
            overage_price=self.overage_price.to_domain() if self.overage_price else None,
            base_session_limit=self.base_session_limit,
            max_session_limit=self.max_session_limit,
        )


class SubscriptionIn(Strict):
    plan_id: PlanIdField
    terms: TermsIn | None = None


class ClockAdvanceIn(Strict):
    seconds: Annotated[float, Field(ge=0, le=100 * 366 * 86400, allow_inf_nan=False)] | None = None
    to: datetime | None = None


class OpenSessionIn(Strict):
    id: Id
    agent_id: Id
    direction: Literal["inbound", "outbound"]


class MessageIn(Strict):
    from_: Literal["customer", "agent"] = Field(alias="from")


class SessionLimitIn(Strict):
    limit: PositiveInt


# -- responses --------------------------------------------------------------------------

class CheckoutIn(Strict):
    plan_id: PlanIdField


class PlanChangeIn(Strict):
    plan_id: PlanIdField
    when: Literal["immediately", "end_of_period", "custom_date"]
    date: Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")] | None = None


class DemoRequestIn(Strict):
    plan_id: PlanIdField
    message: FreeText | None = None


class CardIn(Strict):
    card: Annotated[str, Field(min_length=12, max_length=23, pattern=r"^[0-9 -]+$", description="A test card number")]


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def format_money(m: Money, locale: str = LOCALE) -> str:
    """Money as people read it, in the plan's currency: $49.00, 49,00 €."""
    return format_currency(m.amount / 10 ** get_currency_precision(m.currency), m.currency, locale=locale)


def money(m: Money | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {"amount": m.amount, "currency": m.currency, "display": format_money(m)}


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "id": plan.id,
        "name": plan.name,
        "price": money(plan.price),
        "included_sessions": plan.included_sessions,
        "overage_price": money(plan.overage_price),
        "base_session_limit": plan.base_session_limit,
        "max_session_limit": plan.max_session_limit,
        "tags": list(plan.tags),
        "details": list(plan.details),
        "enterprise": plan.enterprise,
    }


def tenant_json(t: Tenant) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "billing_email": t.billing_email, "created_at": iso(t.created_at)}


def user_json(u: User) -> dict[str, Any]:
    return {"id": u.id, "email": u.email, "role": u.role, "billing_visible": u.billing_visible}


def session_json(s: Session) -> dict[str, Any]:
    return {
        "id": s.id,
        "agent_id": s.agent_id,
        "direction": s.direction.value,
        "status": "ended" if s.ended else "open",
        "answered_only": s.answered_only,
        "started_at": iso(s.started_at),
        "last_activity_at": iso(s.last_activity_at),
        "answered_at": iso(s.answered_at),
        "ended_at": iso(s.ended_at),
        "billable_sessions": s.billable_sessions,
    }


def admitted_json(s: Session) -> dict[str, Any]:
    """The first answer to an admission: only what cannot change, so a replay returns it unchanged."""
    return {
        "id": s.id,
        "admitted": True,
        "agent_id": s.agent_id,
        "direction": s.direction.value,
        "answered_only": s.answered_only,
        "started_at": iso(s.started_at),
        "billable_sessions": s.opening_units,
    }


def card_json(c: Card) -> dict[str, Any]:
    return {
        "badge": c.badge.value,
        "title": c.title,
        "plan": plan_json(c.plan) if c.plan else None,
        "sessions_count": c.sessions_count,
        "trial_sessions_left": c.trial_sessions_left,
        "trial_days_left": c.trial_days_left,
        "next_billing_date": day(c.next_billing_date),
        "starts_on": day(c.starts_on),
        "expires_on": iso(c.expires_on),
        "tags": list(c.tags),
    }


def banner_json(b: Banner) -> dict[str, str]:
    return {"title": b.title, "text": b.text}


def limit_json(s: SessionLimit | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {
        "limit": s.limit,
        "base_limit": s.base_limit,
        "used": s.used,
        "custom": s.custom,
        "warning": s.warning.value if s.warning else None,
    }


def admission_json(a: Admission) -> dict[str, Any]:
    return {
        "accepting": a.accepting,
        "reason": a.reason.code if a.reason else None,
        "message": a.reason.message if a.reason else None,
    }


def invoice_json(i: Invoice) -> dict[str, Any]:
    return {
        "id": i.id,
        "kind": i.kind,
        "status": i.status,
        "total": {"amount": i.total, "currency": i.currency},
        "total_formatted": format_money(Money(i.total, i.currency)),
        "lines": [{"description": x.description, "quantity": x.quantity,
                   "unit_amount": {"amount": x.unit_amount, "currency": i.currency},
                   "amount": {"amount": x.amount, "currency": i.currency}} for x in i.lines],
        "period_start": iso(i.period_start),
        "period_end": iso(i.period_end),
        "created_at": iso(i.created_at),
        "paid_at": iso(i.paid_at),
        "attempts": i.attempts,
    }


def demo_request_json(d: DemoRequest) -> dict[str, Any]:
    return {"id": d.id, "tenant_id": d.tenant_id, "plan_id": d.plan_id, "user_id": d.user_id,
            "message": d.message, "created_at": iso(d.created_at)}


def billing_json(v: BillingView) -> dict[str, Any]:
    return {
        "cards": [card_json(c) for c in v.cards],
        "banners": [banner_json(b) for b in v.banners],
        "session_limit": limit_json(v.session_limit),
        "plans": [plan_json(p) for p in v.plans],
        "admission": admission_json(v.admission),
        "balance_due": money(v.balance_due),
        "credit_balances": [money(m) for m in v.credit_balances],
    }


def notice_json(n: NoticeRecord) -> dict[str, Any]:
    return {"id": n.id, "type": n.type, "title": n.title, "text": n.text, "created_at": n.created_at,
            "email": {"to": n.email_to, "status": n.email_status, "sent_at": n.email_sent_at}}


class WebhookEndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2000, pattern=_printable())


def webhook_endpoint_json(e: Any) -> dict[str, Any]:
    out = {"id": e.id, "url": e.url, "created_at": e.created_at,
           "status": "disabled" if e.disabled_at else "enabled", "disabled_at": e.disabled_at,
           "disabled_reason": e.disabled_reason}
    if e.secret:
        out["secret"] = e.secret  # shown once, when it is made
    return out


def webhook_delivery_json(d: Any) -> dict[str, Any]:
    return {"event_id": d.event_id, "type": d.type, "tenant_id": d.tenant_id, "status": d.status,
            "attempts": d.attempts, "last_status_code": d.last_status_code, "last_error": d.last_error,
            "next_attempt_at": d.next_at, "delivered_at": d.delivered_at, "created_at": d.created_at}
