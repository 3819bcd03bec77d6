"""The one place the service is wired: storage, catalog, clock, payment provider, notices and secrets.
Nothing connects at import time: `build` opens the database; `agentbilling.client.connect` wraps it in `Billing`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import make_url

from agentbilling.catalog import load_catalog
from agentbilling.clock import Clock, SystemClock, TestClock
from agentbilling.delivery.email import Mailer, mailer_for
from agentbilling.delivery.webhooks_out import WebhooksOut
from agentbilling.domain.plans import Catalog
from agentbilling.payments.provider import PaymentProvider
from agentbilling.payments.sandbox.provider import SandboxProvider
from agentbilling.payments.stripe.provider import StripeProvider
from agentbilling.settings import Settings
from agentbilling.storage import migrate
from agentbilling.storage.db import Database, Timeouts
from agentbilling.storage.gate.metering import MeteringStore
from agentbilling.usecases import test_clock as clocks
from agentbilling.usecases.accounts import Accounts
from agentbilling.usecases.lifecycle import Lifecycle
from agentbilling.usecases.notices import NoticeBook
from agentbilling.usecases.session_limit import Subscriptions
from agentbilling.usecases.tokens import TokenSigner
from agentbilling.usecases.web_sessions import WebSessions

log = logging.getLogger(__name__)


@dataclass
class Services:
    """The wired service: what `Billing`'s use cases call."""

    settings: Settings
    db: Database
    catalog: Catalog
    clock: Clock
    clock_follower: clocks.ClockFollower | None  # a shared test clock's advances made by other processes
    secret: str  # the effective secret: signs tokens, links and CSRF tokens
    tokens: TokenSigner
    metering: MeteringStore
    accounts: Accounts
    subscriptions: Subscriptions
    web_sessions: WebSessions
    provider: PaymentProvider
    sandbox: SandboxProvider | None  # the provider, when it is the sandbox
    lifecycle: Lifecycle
    notices: NoticeBook
    mailer: Mailer
    wall_clock: Clock  # delivery's own time: claims and retries, not business time
    webhooks: WebhooksOut


def upgrade_database(database_url: str) -> str:
    """Migrate a database to the latest schema, and nothing else (`agentbilling db upgrade`); the
    revision it is at."""
    db = Database(database_url)
    try:
        migrate.upgrade(db)
    finally:
        db.dispose()
    return migrate.head_revision()


def build(settings: Settings, clock: Clock | None = None, *, upgrade: bool = True) -> Services:
    """The service on the configured database, migrated first unless `upgrade` is false. Without a
    `clock`: the shared test clock if the settings turn it on, else the system's."""
    db = open_database(settings, upgrade=upgrade)
    catalog = load_catalog(settings.plans_file)
    follower = None
    if clock is None:
        if settings.test_clock:
            clock = clocks.load_test_clock(db, datetime.now(UTC))
            follower = clocks.ClockFollower(db, clock).start()  # advances made by other processes
        else:
            clock = SystemClock()
    secret = _effective_secret(settings)
    metering = MeteringStore(db, catalog, billing_enabled=settings.billing_enabled)
    provider, sandbox = _payment_provider(settings, db, catalog, clock, secret)
    lifecycle = Lifecycle(db, catalog, provider, grace=timedelta(days=settings.grace_days))
    if sandbox is not None:  # the sandbox's events reach the service the way a provider's webhooks do
        sandbox.deliver = lambda body, headers: lifecycle.receive(body, headers, clock.now)
    claim = timedelta(seconds=settings.delivery_claim_seconds)
    return Services(
        settings=settings, db=db, catalog=catalog, clock=clock, clock_follower=follower, secret=secret,
        tokens=TokenSigner(secret, settings.token_ttl_seconds),
        metering=metering,
        accounts=Accounts(db, trial_days=settings.trial_days, trial_sessions=settings.trial_sessions,
                          billing_roles=settings.billing_roles, billing_enabled=settings.billing_enabled,
                          roles=settings.roles),
        subscriptions=Subscriptions(db, catalog, metering),
        web_sessions=WebSessions(db, code_seconds=settings.login_link_seconds,
                                 session_seconds=settings.session_ttl_seconds),
        provider=provider, sandbox=sandbox, lifecycle=lifecycle,
        notices=NoticeBook(db, catalog, claim=claim, billing_enabled=settings.billing_enabled),
        mailer=mailer_for(settings.smtp_url, settings.outbox_dir or default_outbox(settings.database_url)),
        wall_clock=SystemClock(),
        webhooks=WebhooksOut(db, claim=claim, allow_private=settings.webhook_allow_private),
    )


def open_database(settings: Settings, *, upgrade: bool = True) -> Database:
    db = Database(settings.database_url, pool_size=settings.db_pool_size,
                  sqlite_synchronous=settings.sqlite_synchronous,
                  pg_synchronous_commit=settings.pg_synchronous_commit, timeouts=timeouts_of(settings))
    if upgrade:
        try:
            migrate.upgrade(db)
        except BaseException:
            db.dispose()  # a database that does not answer yet: the caller may try again
            raise
    return db


def _payment_provider(settings: Settings, db: Database, catalog: Catalog, clock: Clock,
                      secret: str) -> tuple[PaymentProvider, SandboxProvider | None]:
    """The deployment's payment provider, and the same object again if it is the sandbox."""
    match settings.payment_provider:
        case "stripe":
            if not settings.stripe_api_key or not settings.stripe_webhook_secret:
                raise ValueError("AGENTBILLING_PAYMENT_PROVIDER=stripe needs AGENTBILLING_STRIPE_API_KEY and "
                                 "AGENTBILLING_STRIPE_WEBHOOK_SECRET")
            stripe = StripeProvider(api_key=settings.stripe_api_key, webhook_secret=settings.stripe_webhook_secret,
                                    api_base=settings.stripe_api_base, catalog=catalog,
                                    test_clock=isinstance(clock, TestClock))
            return stripe, None
        case _:
            sandbox = SandboxProvider(db, webhook_secret=derived_secret(secret, "sandbox-webhooks"),
                                      link_secret=secret)
            return sandbox, sandbox


def _effective_secret(settings: Settings) -> str:
    if settings.secret_key:
        return settings.secret_key
    log.warning("AGENTBILLING_SECRET_KEY is unset: tokens will not survive a restart")
    return secrets.token_urlsafe(32)


def default_outbox(database_url: str) -> Path:
    """Beside the SQLite file (agentbilling.db.outbox/), else ./agentbilling-outbox/."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database + ".outbox")
    return Path("agentbilling-outbox")


def derived_secret(secret: str, purpose: str) -> str:
    """A Standard Webhooks secret (whsec_ + base64) derived from the deployment's secret key."""
    digest = hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(digest).decode()


def timeouts_of(settings: Settings) -> Timeouts:
    return Timeouts(connect=settings.db_connect_timeout, statement=settings.db_statement_timeout,
                    pool=settings.db_pool_timeout, keepalive_idle=settings.db_keepalive_idle)
