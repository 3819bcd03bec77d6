"""The JSON shapes of answers, declared for the OpenAPI document (and checked on the way out).
Every endpoint names its response model and its problem+json refusals (`problems`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Out(BaseModel):
    """An answer's shape. Extra fields are allowed through: a model lists what clients can rely on."""
    model_config = ConfigDict(extra="allow")


class ProblemOut(Out):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


class AmountOut(Out):
    amount: int
    currency: str


class MoneyOut(AmountOut):
    display: str


class PlanOut(Out):
    id: str
    name: str
    price: MoneyOut | None
    included_sessions: int | None
    overage_price: MoneyOut | None
    base_session_limit: int | None
    max_session_limit: int | None
    tags: list[str]
    details: list[str]
    enterprise: bool


class PlansOut(Out):
    data: list[PlanOut]


class TenantOut(Out):
    id: str
    name: str
    billing_email: str
    created_at: str


class UserOut(Out):
    id: str
    email: str
    role: str
    billing_visible: bool


class ApiKeyOut(Out):
    id: str
    key: str


class TokenOut(Out):
    token: str
    login_url: str
    expires_at: str
    login_url_expires_at: str | None = None


class SessionOut(Out):
    id: str
    agent_id: str
    direction: Literal["inbound", "outbound"]
    status: Literal["open", "ended"]
    answered_only: bool
    started_at: str
    last_activity_at: str | None
    answered_at: str | None
    ended_at: str | None
    billable_sessions: int


class AdmittedOut(Out):
    id: str
    admitted: bool
    agent_id: str
    direction: Literal["inbound", "outbound"]
    answered_only: bool
    started_at: str
    billable_sessions: int


class AdmissionOut(Out):
    accepting: bool
    reason: str | None
    message: str | None


class CardOut(Out):
    badge: str
    title: str
    plan: PlanOut | None
    sessions_count: int
    trial_sessions_left: int | None
    trial_days_left: int | None
    next_billing_date: str | None
    starts_on: str | None
    expires_on: str | None
    tags: list[str]


class BannerOut(Out):
    title: str
    text: str


class SessionLimitOut(Out):
    limit: int | None  # None: a plan without a limit
    base_limit: int | None
    used: int
    custom: bool
    warning: str | None


class BillingOut(Out):
    cards: list[CardOut]
    banners: list[BannerOut]
    session_limit: SessionLimitOut | None
    plans: list[PlanOut]
    admission: AdmissionOut
    balance_due: MoneyOut | None  # what earlier invoices left unpaid (R10)
    credit_balances: list[MoneyOut]  # credit per currency (R8a)


class SessionLimitAnswer(Out):
    session_limit: SessionLimitOut | None


class SessionsPage(Out):
    data: list[SessionOut]
    next_cursor: str | None


class InvoiceLineOut(Out):
    description: str
    quantity: int
    unit_amount: AmountOut
    amount: AmountOut


class InvoiceOut(Out):
    id: str
    kind: str
    status: str
    total: AmountOut
    total_formatted: str
    lines: list[InvoiceLineOut]
    period_start: str | None
    period_end: str | None
    created_at: str | None
    paid_at: str | None
    attempts: int


class InvoicesPage(Out):
    data: list[InvoiceOut]
    next_cursor: str | None


class NoticeEmailOut(Out):
    to: str | None
    status: str
    sent_at: datetime | None


class NoticeOut(Out):
    id: str
    type: str
    title: str
    text: str
    created_at: datetime
    email: NoticeEmailOut


class NoticesPage(Out):
    data: list[NoticeOut]
    next_cursor: str | None


class CheckoutOut(Out):
    id: str
    url: str


class UrlOut(Out):
    url: str


class DemoRequestReceived(Out):
    id: str
    status: str


class DemoRequestOut(Out):
    id: str
    tenant_id: str
    plan_id: str
    user_id: str | None
    message: str | None
    created_at: str


class DemoRequestsPage(Out):
    data: list[DemoRequestOut]
    next_cursor: str | None


class ClockOut(Out):
    now: str


class BacklogOut(Out):
    due: int
    oldest_due_at: datetime | None


class WorkerOut(Out):
    now: datetime
    subscriptions_due: int
    emails: BacklogOut
    webhooks: BacklogOut
    behind_seconds: float


class WebhookEndpointOut(Out):
    id: str
    url: str
    created_at: datetime
    status: Literal["enabled", "disabled"]
    disabled_at: datetime | None
    disabled_reason: str | None


class WebhookEndpointCreated(WebhookEndpointOut):
    secret: str  # Standard Webhooks whsec_ secret, shown only here


class WebhookEndpointsPage(Out):
    data: list[WebhookEndpointOut]
    next_cursor: str | None


class WebhookDeliveryOut(Out):
    event_id: str
    type: str
    tenant_id: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


class WebhookDeliveriesPage(Out):
    data: list[WebhookDeliveryOut]
    next_cursor: str | None


class StatusOut(Out):
    status: str


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` entry for refusals: each a problem+json."""
    return {code: {"model": ProblemOut, "content": {"application/problem+json": {}},
                   "description": DESCRIPTIONS.get(code, "Refused (problem+json)")} for code in codes}


DESCRIPTIONS = {
    400: "Bad request", 401: "No valid credential", 402: "Payment required or refused",
    403: "Forbidden (a form or cookie call without its CSRF token)", 404: "Not found (or not yours to see)",
    409: "Conflict with the current state", 413: "Request body over the size limit",
    422: "Invalid input (control characters in ids among it)", 503: "Not ready or the database is unavailable",
}
