"""What the use cases hand back: plain records of tenants, users, keys, tokens and views."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from agentbilling.domain.card import Banner, Card
from agentbilling.domain.gate import Refusal
from agentbilling.domain.invoicing import InvoiceLine
from agentbilling.domain.limits import SessionLimit
from agentbilling.domain.metering import Session
from agentbilling.domain.money import Money
from agentbilling.domain.plans import Plan


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    billing_email: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class User:
    tenant_id: str
    id: str
    email: str
    role: str
    billing_visible: bool


@dataclass(frozen=True, slots=True)
class NewApiKey:
    id: str
    key: str  # shown once; only its hash is stored


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str  # the API bearer token
    expires_at: datetime
    login_code: str = ""  # the login link's single-use code (another credential)
    login_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    accepting: bool
    reason: Refusal | None


@dataclass(frozen=True, slots=True)
class BillingView:
    cards: list[Card]
    banners: list[Banner]
    session_limit: SessionLimit | None  # None on the trial: the card is for paid plans
    plans: list[Plan]
    admission: Admission
    offline: bool = False  # on a plan arranged with the operator: changed through them, not the portal
    paid_plan_running: bool = False  # Subscribe on another plan changes the plan (domain.card.paid_plan_running)
    balance_due: Money | None = None  # what earlier invoices left unpaid (R10), the oldest currency's
    credit_balances: tuple[Money, ...] = ()  # credit per currency (R8a)


@dataclass(frozen=True, slots=True)
class Page:
    data: list[Session]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Invoice:
    id: str
    kind: str
    status: str
    currency: str
    total: int
    lines: list[InvoiceLine]
    period_start: datetime
    period_end: datetime
    created_at: datetime
    paid_at: datetime | None
    attempts: int


@dataclass(frozen=True, slots=True)
class DemoRequest:
    id: str
    tenant_id: str
    plan_id: str
    user_id: str | None
    message: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NoticeRecord:
    """A notice as the tab, the API and the email tell it."""

    id: str
    tenant_id: str
    type: str
    key: str
    title: str
    text: str
    created_at: datetime
    email_to: str | None
    email_status: str
    email_sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class PassReport:
    """What one worker pass did."""

    subscriptions_advanced: int  # subscriptions with something due (changes, renewals, retries)
    notices_recorded: int
    emails_sent: int
    webhooks_delivered: int


@dataclass(frozen=True, slots=True)
class Backlog:
    """Since when due work waits: a retry is due from its wall-clock time, a first try from the
    business moment its notice or event was made (the two clocks differ under the test clock)."""

    oldest_retry_at: datetime | None  # wall clock
    oldest_new_at: datetime | None  # business clock

    def behind(self, wall: datetime, now: datetime) -> float:
        waits = [(wall - self.oldest_retry_at).total_seconds() if self.oldest_retry_at else 0.0,
                 (now - self.oldest_new_at).total_seconds() if self.oldest_new_at else 0.0]
        return max(0.0, *waits)

    @property
    def oldest(self) -> datetime | None:
        return self.oldest_new_at or self.oldest_retry_at


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """How far behind the workers are (GET /v1/worker)."""

    now: datetime  # business time
    subscriptions_due: int  # a scheduled change, a cancellation's end or a renewal not yet written
    emails_due: int
    oldest_email_due_at: datetime | None
    webhooks_due: int
    oldest_webhook_due_at: datetime | None
    behind_seconds: float  # since the oldest due email or webhook (0: nothing waits)
