"""The schema, keyed by tenant first so it can be sharded by tenant. Alembic migrates it."""

from __future__ import annotations

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
    Column("updated_at", UTCDateTime, nullable=False),
    # Bumped by every UPDATE through SQLAlchemy: the admission checks the standing it keeps per
    # tenant against it, inside its own statement (storage/metering.py).
    Column("revision", BigInteger, nullable=False, server_default=text("1"), onupdate=text("revision + 1")),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
)

# Billable sessions per tenant and period (the trial is one period), kept incrementally (R3).
usage_counters = Table(
    "usage_counters",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("period", String(32), nullable=False),  # "trial", or the paid period's start
    Column("billable_sessions", BigInteger, nullable=False),
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
)

# The test clock's time, so that a restart keeps it (only used when the test clock is on).
test_clock = Table(
    "test_clock",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("now", UTCDateTime, nullable=False),
)
