"""The Python API: every operation of the service, for the HTTP layer and for embedding platforms.
Start with `agentbilling.connect()` (settings from AGENTBILLING_* variables); examples: README.md, "Python API"."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from agentbilling import bootstrap
from agentbilling.clock import Clock, TestClock
from agentbilling.delivery.webhooks_out import Delivery, Endpoint
from agentbilling.domain.errors import NotFound
from agentbilling.domain.gate import AdmissionRequest, OpenResult
from agentbilling.domain.inputs import choice, identifier
from agentbilling.domain.limits import SessionLimit
from agentbilling.domain.metering import Direction, Sender, Session
from agentbilling.domain.plans import Plan, Terms
from agentbilling.domain.usage import DayUsage
from agentbilling.payments.provider import Checkout
from agentbilling.payments.sandbox.provider import PORTAL_LINK_INVALID, SandboxProvider
from agentbilling.settings import Settings
from agentbilling.storage import migrate
from agentbilling.storage.repositories.idempotency import IdempotencyStore
from agentbilling.storage.timeouts import unreachable
from agentbilling.usecases import test_clock as clocks
from agentbilling.usecases import views
from agentbilling.usecases.results import (
    Admission,
    BillingView,
    DemoRequest,
    Invoice,
    IssuedToken,
    NewApiKey,
    NoticeRecord,
    Page,
    PassReport,
    Tenant,
    User,
    WorkerStatus,
)
from agentbilling.usecases.tokens import hash_api_key


class Billing:
    """The service, wired: storage, catalog, clock and secrets. Build it with `connect`."""

    def __init__(self, services: bootstrap.Services) -> None:
        self.settings = services.settings
        self.db = services.db
        self.catalog = services.catalog
        self.clock = services.clock
        self.clock_follower = services.clock_follower
        self.secret = services.secret  # the effective secret: signs tokens, links and CSRF tokens
        self.tokens = services.tokens
        self.metering = services.metering
        self.accounts = services.accounts
        self.subscriptions = services.subscriptions
        self.web_sessions = services.web_sessions
        self.provider = services.provider
        self.sandbox = services.sandbox
        self.lifecycle = services.lifecycle
        self.notices = services.notices
        self.mailer = services.mailer
        self.wall_clock = services.wall_clock  # delivery's own time: claims and retries, not business time
        self.webhooks = services.webhooks

    def now(self) -> datetime:
        return self.clock.now()

    def close(self) -> None:
        if self.clock_follower is not None:
            self.clock_follower.stop()
        self.webhooks.close()
        self.db.dispose()

    # -- operator: tenants, keys, users, tokens ----------------------------------------

    def create_tenant(self, tenant_id: str, name: str, billing_email: str) -> Tenant:
        return self.accounts.create_tenant(tenant_id, name, billing_email, self.now())

    def get_tenant(self, tenant_id: str) -> Tenant:
        return self.accounts.get_tenant(tenant_id)

    def update_tenant(self, tenant_id: str, *, name: str | None = None, billing_email: str | None = None) -> Tenant:
        return self.accounts.update_tenant(tenant_id, name=name, billing_email=billing_email)

    def create_api_key(self, tenant_id: str) -> NewApiKey:
        return self.accounts.create_api_key(tenant_id, self.now())

    def revoke_api_key(self, tenant_id: str, key_id: str) -> None:
        self.accounts.revoke_api_key(tenant_id, key_id, self.now())

    def tenant_for_api_key(self, key: str) -> str | None:
        return self.metering.tenant_for_key_hash(hash_api_key(key))

    def create_user(self, tenant_id: str, user_id: str, email: str, role: str) -> User:
        return self.accounts.create_user(tenant_id, user_id, email, role, self.now())

    def get_user(self, tenant_id: str, user_id: str) -> User:
        return self.accounts.get_user(tenant_id, user_id)

    def update_user(self, tenant_id: str, user_id: str, *, email: str | None = None, role: str | None = None) -> User:
        return self.accounts.update_user(tenant_id, user_id, email=email, role=role)

    def delete_user(self, tenant_id: str, user_id: str) -> None:
        self.accounts.delete_user(tenant_id, user_id)

    def issue_token(self, tenant_id: str, user_id: str) -> IssuedToken:
        """The user's API bearer token, and a login link's single-use code: two credentials."""
        token, expires_at = self.tokens.issue(tenant_id, user_id, self.accounts.user_nonce(tenant_id, user_id))
        code, code_expires_at = self.web_sessions.new_login_code(tenant_id, user_id)
        return IssuedToken(token, expires_at, code, code_expires_at)

    def login_code_user(self, code: str) -> User | None:
        """Whose unused login code this is (without using it)."""
        found = self.web_sessions.code_user(code)
        return self._existing_user(*found) if found else None

    def sign_in(self, code: str, replacing: str | None = None) -> tuple[str, User] | None:
        """Uses a login code once: a new session's id and its user, or None. `replacing`, the
        session the browser had, ends with it."""
        opened = self.web_sessions.exchange(code, replacing)
        if opened is None:
            return None
        user = self._existing_user(opened[1].tenant_id, opened[1].user_id)
        if user is None:
            self.web_sessions.end(opened[0])
            return None
        return opened[0], user

    def user_for_session(self, session_id: str) -> User | None:
        """The user of a live Billing tab session (the cookie's value), or None."""
        session = self.web_sessions.session(session_id)
        return self._existing_user(session.tenant_id, session.user_id) if session else None

    def sign_out(self, session_id: str) -> None:
        self.web_sessions.end(session_id)

    def _existing_user(self, tenant_id: str, user_id: str) -> User | None:
        try:
            return self.accounts.get_user(tenant_id, user_id)
        except NotFound:
            return None

    def user_for_token(self, token: str) -> User | None:
        """The user a token was issued to, while it is unexpired and the user still exists."""
        claims = self.tokens.read(token)
        if claims is None:
            return None
        tenant_id, user_id, nonce = claims
        try:
            if self.accounts.user_nonce(tenant_id, user_id) != nonce:
                return None
            return self.accounts.get_user(tenant_id, user_id)
        except NotFound:
            return None

    # -- operator: plans and offline subscriptions ------------------------------------

    def plans(self) -> list[Plan]:
        return list(self.catalog.values())

    def put_subscription(self, tenant_id: str, plan_id: str, terms: Terms | None = None) -> BillingView:
        self.lifecycle.put_on_plan(tenant_id, plan_id, terms, self.now())
        return self.billing_view(tenant_id)

    def demo_requests(self, *, cursor: str | None = None, limit: int = 20) -> tuple[list[DemoRequest], str | None]:
        """The Book a demo requests, newest first."""
        return self.lifecycle.demo_requests(cursor, limit)

    # -- the test clock -------------------------------------------------------------------

    @property
    def test_clock(self) -> TestClock | None:
        return self.clock if isinstance(self.clock, TestClock) else None

    def advance_clock(self, *, seconds: float | None = None, to: datetime | None = None) -> datetime:
        if self.test_clock is None:
            raise NotFound("The test clock is off in this deployment.")
        return clocks.advance(self.db, self.test_clock, seconds=seconds, to=to, run_due=self._due_at,
                              next_due=self._next_due)

    def _next_due(self, after: datetime) -> datetime | None:
        moments = [m for m in (self.lifecycle.next_due(after), self.notices.next_due(after)) if m is not None]
        return min(moments, default=None)

    def _due_at(self, moment: datetime) -> None:
        self.provider.clock_moved(moment)  # a provider's own test clock follows, its events applied
        self._pass(moment)

    def run_due(self) -> PassReport:
        """Apply what has come due by now: scheduled changes, renewals, charges, provider events,
        and the notices they and the clock make due; then send what is due. What the pass did."""
        return self._pass(self.now())

    def _pass(self, now: datetime) -> PassReport:
        advanced = self.lifecycle.run_due(now)
        recorded = self.notices.detect(now)
        return PassReport(advanced, recorded, self._email(), self.webhooks.deliver(self.wall_clock.now))

    def _email(self) -> int:
        link = f"{self.settings.public_url}/billing" if self.settings.public_url else None
        return self.notices.deliver(self.mailer, self.wall_clock.now, sender=self.settings.email_from, link=link)

    def deliver_notices(self) -> int:
        """Email the notices that are due to their tenants' billing contacts, then post the webhooks
        that are due to the operator's endpoints; how many emails and webhooks went out."""
        return self._email() + self.webhooks.deliver(self.wall_clock.now)

    def idempotency_keys(self) -> IdempotencyStore:
        """The stored answers to requests sent with an Idempotency-Key, kept for the TTL setting."""
        return IdempotencyStore(self.db, timedelta(seconds=self.settings.idempotency_ttl_seconds))

    def expire_idempotency_keys(self) -> int:
        """Delete the Idempotency-Keys whose time to live (wall clock) is over, in bounded batches;
        how many went. The worker calls it on every pass."""
        return self.idempotency_keys().expire(self.wall_clock.now())

    def ready(self) -> bool:
        """The database answers and its schema is the latest (`/readyz`); raises if it cannot be reached."""
        with self.db.read() as conn:
            return migrate.is_current(conn)

    @staticmethod
    def unreachable(exc: BaseException) -> bool:
        """Whether an error means the database could not be reached (an answer of 503, not 500)."""
        return unreachable(exc)

    def worker_status(self) -> WorkerStatus:
        """How far behind the workers are: what is due and not done, and since when."""
        wall, now = self.wall_clock.now(), self.now()
        emails, email_backlog = self.notices.backlog(wall)
        hooks, hook_backlog = self.webhooks.backlog(wall)
        return WorkerStatus(
            now=now, subscriptions_due=self.lifecycle.due_count(now), emails_due=emails,
            oldest_email_due_at=email_backlog.oldest, webhooks_due=hooks, oldest_webhook_due_at=hook_backlog.oldest,
            behind_seconds=max(email_backlog.behind(wall, now), hook_backlog.behind(wall, now)),
        )

    # -- operator: webhook endpoints ------------------------------------------------------------

    def create_webhook_endpoint(self, url: object) -> Endpoint:
        return self.webhooks.create_endpoint(url, self.now())

    def webhook_endpoints(self) -> list[Endpoint]:
        return self.webhooks.endpoints()

    def webhook_endpoint(self, endpoint_id: str) -> Endpoint:
        return self.webhooks.endpoint(endpoint_id)

    def delete_webhook_endpoint(self, endpoint_id: str) -> None:
        self.webhooks.delete_endpoint(endpoint_id)

    def webhook_deliveries(self, endpoint_id: str, *, cursor: str | None = None,
                           limit: int = 20) -> tuple[list[Delivery], str | None]:
        return self.webhooks.deliveries(endpoint_id, cursor, limit)

    def list_notices(self, tenant_id: str, *, cursor: str | None = None,
                     limit: int = 20) -> tuple[list[NoticeRecord], str | None]:
        """The tenant's notices (R14), newest first."""
        return self.notices.list(tenant_id, cursor, limit)

    # -- agent runtime ------------------------------------------------------------------

    def open_session(self, tenant_id: str, session_id: str, *, agent_id: str, direction: str | Direction) -> OpenResult:
        """Admit a new session and count its first unit, atomically; or refuse with the R4 reason."""
        return self.metering.open_session(tenant_id, *self.admission_request(session_id, agent_id, direction),
                                          self.now())

    def open_session_for_key(
        self, key: str, session_id: str, *, agent_id: str, direction: str | Direction
    ) -> OpenResult | None:
        """`open_session` for the tenant of a live API key, checked in the same transaction; None if
        the key is unknown or revoked."""
        return self.metering.open_session_for_key(
            hash_api_key(key), *self.admission_request(session_id, agent_id, direction), self.now())

    @staticmethod
    def admission_request(session_id: str, agent_id: str, direction: str | Direction) -> AdmissionRequest:
        """A request to open a session, validated, for `open_sessions_for_key`."""
        return AdmissionRequest(identifier(session_id, "id"), identifier(agent_id, "agent_id"),
                                choice(Direction, direction, "direction"))

    def open_sessions_for_key(
        self, key: str, requests: Sequence[AdmissionRequest]
    ) -> list[OpenResult | Exception | None]:
        """Several `open_session_for_key` under one key in one transaction and one commit (group
        commit): each gets the answer it would get alone, in order; an error is returned in its
        place rather than raised. For callers that gather concurrent requests (the HTTP API)."""
        return self.metering.open_sessions_for_key(hash_api_key(key), requests, self.now())

    def gate_pool(self) -> Any:
        """PostgreSQL: a pool of asyncio connections for `open_sessions_async`, to be opened
        and closed in the caller's event loop; None on SQLite."""
        return self.db.async_pool(self.settings.admission_threads)

    async def open_sessions_async(
        self, pool: Any, key: str, requests: Sequence[AdmissionRequest]
    ) -> list[OpenResult | Exception | None] | None:
        """The common case of `open_sessions_for_key` without leaving the event loop: new ids
        under a key whose tenant's standing is kept, each counted at once, admitted in one
        statement on a connection of `pool` (`gate_pool`). None when that cannot decide them,
        with nothing changed: then `open_sessions_for_key` does, on a thread."""
        return await self.metering.open_sessions_async(pool, hash_api_key(key), requests, self.now())

    def record_message(self, tenant_id: str, session_id: str, sender: str | Sender) -> Session:
        return self.metering.record_message(tenant_id, session_id, choice(Sender, sender, "from"), self.now())

    def end_session(self, tenant_id: str, session_id: str) -> Session:
        return self.metering.end_session(tenant_id, session_id, self.now())

    def get_session(self, tenant_id: str, session_id: str) -> Session:
        return self.metering.get_session(tenant_id, session_id)

    def admission(self, tenant_id: str) -> Admission:
        _, st, used = self.metering.standing_and_usage(tenant_id, self.now())
        reason = st.refusal(used)
        return Admission(accepting=reason is None, reason=reason)

    # -- billing (the tab) --------------------------------------------------------------

    def billing_view(self, tenant_id: str) -> BillingView:
        return views.with_balances(views.billing_view(self.metering, self.catalog, tenant_id, self.now()),
                                   *self.lifecycle.balances(tenant_id))

    def set_session_limit(self, tenant_id: str, limit: object) -> SessionLimit:
        self.subscriptions.set_session_limit(tenant_id, limit, self.now())
        return self._session_limit(tenant_id)

    def reset_session_limit(self, tenant_id: str) -> SessionLimit:
        self.subscriptions.reset_session_limit(tenant_id, self.now())
        return self._session_limit(tenant_id)

    def _session_limit(self, tenant_id: str) -> SessionLimit:
        limit = self.billing_view(tenant_id).session_limit
        assert limit is not None
        return limit

    def usage_by_day(self, tenant_id: str) -> list[DayUsage]:
        """Billable sessions per day of the current period (or the trial), for the usage chart."""
        return views.usage_by_day(self.db, self.metering, tenant_id, self.now())

    def list_sessions(self, tenant_id: str, *, cursor: str | None = None, limit: int = 20) -> Page:
        return views.list_sessions(self.db, tenant_id, cursor, limit)

    # -- billing: subscriptions through the provider -------------------------------------------

    def public_url(self, fallback: str = "http://127.0.0.1:8000") -> str:
        return (self.settings.public_url or fallback).rstrip("/")

    def checkout(self, tenant_id: str, plan_id: str, *, base_url: str | None = None) -> Checkout:
        """A checkout for a plan in the secure billing portal; paying it starts the plan."""
        return self.lifecycle.checkout(tenant_id, plan_id, self.now(), base_url or self.public_url())

    def portal_url(self, tenant_id: str, *, base_url: str | None = None, user_id: str | None = None) -> str:
        """The secure billing portal (Manage): payment methods, invoices, Cancel subscription. The
        sandbox's link names the user it is for (`portal_tenant` re-checks them on every request)."""
        base = base_url or self.public_url()
        url = self.lifecycle.portal_url(tenant_id, self.now(), base)
        if self.sandbox is not None and user_id is not None:
            url = self.sandbox.user_portal_url(tenant_id, user_id, self.accounts.user_nonce(tenant_id, user_id), base)
        return url

    def portal_tenant(self, token: str) -> str:
        """The tenant of a sandbox portal link, while the link is unexpired and its user still exists
        (the same one: a deleted and re-added user has a new nonce) and has billing rights."""
        tenant_id, user_id, nonce = self._sandbox().portal_claims(token)
        user = self._existing_user(tenant_id, user_id)
        if user is None or self.accounts.user_nonce(tenant_id, user_id) != nonce or not user.billing_visible:
            raise NotFound(PORTAL_LINK_INVALID)
        return tenant_id

    def change_plan(self, tenant_id: str, plan_id: str, when: str, date: str | None = None) -> BillingView:
        """Switch plans Immediately (prorated), at the End of the current period, or On custom date (R8)."""
        self.lifecycle.change_plan(tenant_id, plan_id, when, date, self.now())
        return self.billing_view(tenant_id)

    def cancel_plan_change(self, tenant_id: str) -> BillingView:
        self.lifecycle.cancel_change(tenant_id, self.now())
        return self.billing_view(tenant_id)

    def invoices(self, tenant_id: str, *, cursor: str | None = None,
                 limit: int = 20) -> tuple[list[Invoice], str | None]:
        return self.lifecycle.invoices(tenant_id, cursor, limit)

    def invoice(self, tenant_id: str, invoice_id: str) -> Invoice:
        return self.lifecycle.invoice(tenant_id, invoice_id)

    def request_demo(self, tenant_id: str, plan_id: str, *, user_id: str | None = None,
                     message: str | None = None) -> DemoRequest:
        """Book a demo of an Enterprise plan: stored for the operator; answers Request received."""
        return self.lifecycle.request_demo(tenant_id, plan_id, user_id, message, self.now())

    def receive_webhook(self, provider: str, body: bytes, headers: Mapping[str, str]) -> str:
        """A provider's webhook delivery: verified on the raw body, stored, applied once."""
        if provider != self.provider.name:
            raise NotFound(f"No webhooks are taken from {provider!r} in this deployment.")
        return self.lifecycle.receive(body, headers, self.now)

    # -- the sandbox portal: what a person does there (and tests and demos, through the API) ----

    def _sandbox(self, tenant_id: str | None = None) -> SandboxProvider:
        if self.sandbox is None:
            raise NotFound("The sandbox portal is off: the payment provider is not the sandbox.")
        if tenant_id is not None:
            self.accounts.get_tenant(tenant_id)
        return self.sandbox

    def sandbox_complete_checkout(self, checkout_id: str, card: str) -> None:
        self._sandbox().complete_checkout(checkout_id, card, self.now())

    def sandbox_add_payment_method(self, tenant_id: str, card: str) -> None:
        self._sandbox(tenant_id).add_payment_method(tenant_id, card, self.now())

    def sandbox_cancel(self, tenant_id: str) -> None:
        self._sandbox(tenant_id).cancel(tenant_id, self.now())

    def sandbox_resume(self, tenant_id: str) -> None:
        self._sandbox(tenant_id).resume(tenant_id, self.now())


def connect(settings: Settings | None = None, *, clock: Clock | None = None, upgrade: bool = True) -> Billing:
    """Open the service on the configured database, migrating it first unless told not to."""
    return Billing(bootstrap.build(settings or Settings(), clock, upgrade=upgrade))
