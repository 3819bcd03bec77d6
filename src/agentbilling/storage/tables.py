"""The schema, keyed by tenant first so it can be sharded by tenant. Alembic migrates it."""

from __future__ import annotations

import secrets

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

from agentbilling.storage.types import UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("billing_email", String(320), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# One row per tenant: the current subscription. Time-based changes are derived, not stored.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("plan_id", String(64)),
    Column("terms", JSON),
    Column("anchor_at", UTCDateTime),
    Column("trial_started_at", UTCDateTime, nullable=False),
    Column("trial_ends_at", UTCDateTime, nullable=False),
    Column("trial_sessions", Integer, nullable=False),
    Column("custom_limit", BigInteger),
    # A scheduled plan change (R8), cancellation (R11) and failed payment (R10): what time does to
    # the plan is derived from these (domain/subscription.py `at`).
    Column("pending_plan_id", String(64)),
    Column("pending_at", UTCDateTime),
    Column("cancel_at", UTCDateTime),
    Column("payment_failed_at", UTCDateTime),
    Column("grace_ends_at", UTCDateTime),
    Column("ended_at", UTCDateTime),
    Column("offline", Boolean, nullable=False, server_default=text("false")),
    # The provider's side of the paid plan, and how far it has been invoiced.
    Column("provider", String(16)),
    Column("provider_customer", String(200)),
    Column("provider_subscription", String(200)),
    Column("billed_until", UTCDateTime),  # the end of the last period invoiced (Stripe: its period's end)
    Column("previous_plan_id", String(64)),  # the plan before the last change, and when it changed:
    Column("plan_changed_at", UTCDateTime),  # a renewal prices the sessions of the period that ended by it
    Column("updated_at", UTCDateTime, nullable=False),
    # A new random token on every INSERT and UPDATE through SQLAlchemy: the admission checks the
    # standing it caches per tenant against it, inside its own statement (storage/gate/sql.py). Random,
    # not a counter, so that no token repeats across a restore, a failover or a recreated database,
    # and no standing cached by a process survives a database it did not come from.
    Column("revision", BigInteger, nullable=False, server_default=text("1"), default=lambda: new_revision(),
           onupdate=lambda: new_revision()),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
)

def new_revision() -> int:
    """A subscription's revision token: random, 62 bits, so that none is ever issued twice."""
    return secrets.randbits(62) + 2


# Billable sessions per tenant and period (the trial is one period), kept incrementally (R3).
usage_counters = Table(
    "usage_counters",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("period", String(32), nullable=False),  # "trial", or the paid period's start
    Column("billable_sessions", BigInteger, nullable=False),
    # The subscription revision this row was last counted under after a fresh read, or NULL once a
    # writer changed what admission depends on (a trigger, migration 0007): PostgreSQL's one-statement
    # admission counts only while it equals the revision it cached, checked on the row's latest version.
    Column("checked_revision", BigInteger),
    PrimaryKeyConstraint("tenant_id", "period"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("id", String(200), nullable=False),
    Column("agent_id", String(200), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("answered_only", Boolean, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("last_activity_at", UTCDateTime, nullable=False),
    Column("answered_at", UTCDateTime),
    Column("ended_at", UTCDateTime),
    Column("billable_sessions", Integer, nullable=False),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("ix_sessions_tenant_started", "tenant_id", "started_at", "id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("id", String(40), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    PrimaryKeyConstraint("tenant_id", "id"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
)

users = Table(
    "users",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("id", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    Column("role", String(32), nullable=False),
    Column("auth_nonce", String(32), nullable=False),  # changes when the user is removed
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("tenant_id", "id"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
)

# A login link's single-use code (only its SHA-256 is kept), exchanged once for a web session.
login_codes = Table(
    "login_codes",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("user_id", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime),
    PrimaryKeyConstraint("tenant_id", "code_hash"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
)

# The Billing tab's server-side sessions: the cookie carries the id, the table only its SHA-256.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("id_hash", String(64), nullable=False),
    Column("user_id", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    PrimaryKeyConstraint("tenant_id", "id_hash"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
    Index("ix_web_sessions_user", "tenant_id", "user_id"),
)

# Replays of mutating POSTs sent with an Idempotency-Key.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("principal", String(300), nullable=False),
    Column("key", String(255), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("principal", "key"),
    Index("ix_idempotency_keys_created_at", "created_at"),  # the worker deletes expired keys by it
)

# Invoices of paid plans: the first at checkout, one at each period's start, one per immediate
# plan change. Charged through the provider; its webhooks say whether they were paid.
invoices = Table(
    "invoices",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("provider_subscription", String(200)),  # the paid plan it belongs to
    Column("kind", String(16), nullable=False),  # first, renewal, proration
    Column("status", String(16), nullable=False),  # open, paid, void
    Column("currency", String(3), nullable=False),
    Column("total", BigInteger, nullable=False),  # minor units
    Column("lines", JSON, nullable=False),
    Column("period_start", UTCDateTime, nullable=False),
    Column("period_end", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("paid_at", UTCDateTime),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", UTCDateTime),  # when the worker charges it next; None: not to be charged
    Column("first_failed_at", UTCDateTime),
    # An upgrade's invoice (R8): the change it makes once paid, and the usage counter when asked.
    Column("change_plan_id", String(64)),
    Column("change_at", UTCDateTime),
    Column("change_counter", BigInteger),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("ix_invoices_tenant_created", "tenant_id", "created_at", "id"),
    Index("ix_invoices_next_attempt_at", "next_attempt_at"),
)

# The ledger (R8a, domain/ledger.py): a paid period split at each plan change into segments, each
# priced by its plan. `units` is known once the segment ended; `closed_by` names the invoice that
# billed its extras, set once.
segments = Table(
    "segments",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("start_at", UTCDateTime, nullable=False),
    Column("period_start", UTCDateTime, nullable=False),
    Column("period_end", UTCDateTime, nullable=False),
    Column("plan_id", String(64), nullable=False),
    Column("units_at_start", BigInteger, nullable=False),
    Column("end_at", UTCDateTime),
    Column("units", BigInteger),
    Column("closed_by", String(64)),
    PrimaryKeyConstraint("tenant_id", "start_at"),
    Index("ix_segments_tenant_period", "tenant_id", "period_start"),
)

# Credit owed to a tenant (from a downgrade or a refund), per currency: it pays only invoices in it.
credit_balances = Table(
    "credit_balances",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant_id", "currency"),
)

# Every provider event received, stored before it is applied: unique by provider and event id, so
# each is applied once however often it is delivered.
provider_events = Table(
    "provider_events",
    metadata,
    Column("provider", String(16), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("type", String(100), nullable=False),
    Column("tenant_id", String(64)),
    Column("payload", Text, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("provider", "event_id"),
)

# What the service must still tell the provider after a commit (void an invoice, end a
# subscription, expire checkouts): written in the transaction that decided it, carried out after,
# and again by each worker pass until it went through. Each is idempotent at the provider.
provider_commands = Table(
    "provider_commands",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),  # void, end, expire_checkouts
    Column("target", String(200)),  # the invoice, the subscription, or the customer
    Column("created_at", UTCDateTime, nullable=False),
    Column("done_at", UTCDateTime),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Index("ix_provider_commands_pending", "done_at", "id"),
)

# Book a demo requests, for the operator.
demo_requests = Table(
    "demo_requests",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("plan_id", String(64), nullable=False),
    Column("user_id", String(200)),
    Column("message", Text),
    Column("created_at", UTCDateTime, nullable=False),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
    Index("ix_demo_requests_created", "created_at", "id"),
)

# The sandbox provider's own books (payments/sandbox/provider.py): what a real provider keeps on its side.
sandbox_customers = Table(
    "sandbox_customers",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("customer_id", String(40), nullable=False, unique=True),
    Column("card_number", String(19)),  # the default payment method (test cards only)
    Column("subscription_id", String(40)),
    Column("plan_id", String(64)),
    Column("subscribed_at", UTCDateTime),
    Column("cancel_requested_at", UTCDateTime),  # Cancel subscription, until resumed
    Column("updated_at", UTCDateTime, nullable=False),
)

sandbox_checkouts = Table(
    "sandbox_checkouts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("plan_id", String(64), nullable=False),
    Column("plan_name", String(200), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),  # open, complete
    Column("created_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),
    Column("subscription_id", String(40)),
    Column("return_url", Text),
)

sandbox_charges = Table(
    "sandbox_charges",
    metadata,
    Column("invoice_id", String(64), nullable=False),
    Column("attempt", String(40), nullable=False),  # the caller's key: a charge is made once per key
    Column("tenant_id", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("succeeded", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("invoice_id", "attempt"),
)

sandbox_voids = Table(
    "sandbox_voids",
    metadata,
    Column("invoice_id", String(64), primary_key=True),  # voided by the service: never charged again
    Column("tenant_id", String(64), nullable=False),
    Column("voided_at", UTCDateTime, nullable=False),
)

# The sandbox's outbox: events in the order they happened, each signed and delivered until answered.
sandbox_events = Table(
    "sandbox_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("type", String(100), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
    Index("ix_sandbox_events_undelivered", "delivered_at", "seq"),
)

# The test clock's time, so that a restart keeps it (only used when the test clock is on).
test_clock = Table(
    "test_clock",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("now", UTCDateTime, nullable=False),
)

# Leases: one holder per tenant at a time across processes, for what SQLite cannot lock by row
# (storage/leases.py): provider webhooks of one tenant are applied one at a time.
tenant_leases = Table(
    "tenant_leases",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("holder", String(32), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# The notices of R14, one row each: the unique (tenant, key) is what makes one go out once. The
# email's delivery state lives beside it: claimed by a worker until `email_claimed_until`, sent
# at `email_sent_at` (wall-clock times, as they are about the process, not the business).
notices = Table(
    "notices",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("id", String(40), nullable=False),
    Column("type", String(40), nullable=False),
    Column("key", String(200), nullable=False),
    Column("title", String(300), nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),  # business time (the injected clock)
    Column("email_to", String(320)),
    Column("email_status", String(16), nullable=False),  # pending, sent, failed (gave up)
    Column("email_attempts", Integer, nullable=False, server_default=text("0")),
    Column("email_next_at", UTCDateTime),
    Column("email_claimed_until", UTCDateTime),
    Column("email_sent_at", UTCDateTime),
    Column("email_error", Text),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index("uq_notices_tenant_key", "tenant_id", "key", unique=True),
    Index("ix_notices_tenant_created", "tenant_id", "created_at", "id"),
    Index("ix_notices_email_due", "email_status", "email_next_at"),
)

# Webhooks out (R14): the operator's endpoints, the events the platform hears of, and one
# delivery per event and endpoint, made in the transaction that made the event.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("url", String(2000), nullable=False),
    Column("secret", String(100), nullable=False),  # whsec_…, Standard Webhooks
    Column("created_at", UTCDateTime, nullable=False),
    Column("failing_since", UTCDateTime),  # the first failure of the current run of failures
    Column("disabled_at", UTCDateTime),
    Column("disabled_reason", String(200)),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", String(40), primary_key=True),  # the webhook-id header: the same on every try
    Column("tenant_id", String(64), nullable=False),
    Column("type", String(60), nullable=False),
    Column("payload", Text, nullable=False),  # the JSON body, exactly as signed and sent
    Column("created_at", UTCDateTime, nullable=False),  # business time
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("endpoint_id", String(40), nullable=False),
    Column("event_id", String(40), nullable=False),
    Column("status", String(16), nullable=False),  # pending, delivered, failed
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_at", UTCDateTime),  # wall clock
    Column("claimed_until", UTCDateTime),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("delivered_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("endpoint_id", "event_id"),
    Index("ix_webhook_deliveries_due", "status", "next_at"),
)
