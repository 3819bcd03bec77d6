"""Deployment settings from the environment (12-factor), prefixed AGENTBILLING_."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTBILLING_", extra="ignore")

    database_url: str = "sqlite:///./agentbilling.db"
    operator_key: str | None = None
    test_clock: bool = False
    billing_enabled: bool = True
    trial_days: int = Field(14, gt=0)
    trial_sessions: int = Field(50, gt=0)
    grace_days: int = Field(7, ge=0)
    plans_file: str | None = None
    payment_provider: Literal["sandbox", "stripe"] = "sandbox"
    smtp_url: str | None = None  # smtp://host:25, smtp+starttls://user:pass@host:587, smtps://user:pass@host:465
    outbox_dir: str | None = None  # with no SMTP: where emails are written (default: beside the SQLite file)
    email_from: str = "agentbilling <billing@agentbilling.invalid>"
    # How long a worker holds the emails and webhooks it claimed: one that dies frees them after this.
    delivery_claim_seconds: float = Field(120.0, gt=0)
    worker_interval: float = Field(5.0, gt=0)
    public_url: str | None = None
    secret_key: str | None = None
    billing_roles: Annotated[frozenset[str], NoDecode] = frozenset({"owner", "admin"})
    # Every role a user may have (the billing roles are always among them): any other is a 422.
    roles: Annotated[frozenset[str], NoDecode] = frozenset({"owner", "admin", "member", "viewer", "support"})
    token_ttl_seconds: int = Field(12 * 3600, gt=0)  # the API bearer token of a user
    login_link_seconds: int = Field(15 * 60, gt=0)  # a login link's single-use code
    session_ttl_seconds: int = Field(12 * 3600, gt=0)  # a Billing tab cookie session, from sign-in
    max_body_bytes: int = Field(1024 * 1024, gt=0)  # larger request bodies are a 413, unread
    frame_ancestors: str = "'none'"  # CSP frame-ancestors of every page: the origins that may embed them
    webhook_allow_private: bool = False  # webhook endpoints on loopback/private/link-local addresses
    # SQLite durability: NORMAL in WAL mode survives a crash of the process; FULL also a power cut.
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    # PostgreSQL durability of the service's commits: None keeps the server's own setting (normally
    # on: answered after the flush, surviving a power cut); off answers before the flush, which
    # survives a crash of this process but may lose the last fraction of a second of commits to
    # a crash of PostgreSQL or its machine (never corrupting anything).
    pg_synchronous_commit: Literal["on", "off"] | None = None
    db_pool_size: int = Field(8, gt=0)
    # How long an Idempotency-Key is remembered (wall-clock seconds from its first use), as Stripe's.
    idempotency_ttl_seconds: int = Field(86_400, gt=0)
    # How long to wait on the database before answering 503 `database-unavailable` (README).
    db_connect_timeout: float = Field(5.0, gt=0)
    db_statement_timeout: float = Field(15.0, gt=0)
    db_pool_timeout: float = Field(5.0, gt=0)
    db_keepalive_idle: int = Field(10, gt=0)  # TCP keepalives: a dead peer is noticed within idle + 15 s
    # Worker threads that admissions over HTTP run on (they queue for them, in order).
    admission_threads: int = Field(4, gt=0)
    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None

    @field_validator("billing_roles", "roles", mode="before")
    @classmethod
    def _split_roles(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(r.strip() for r in value.split(",") if r.strip())
        return value

    @field_validator("frame_ancestors")
    @classmethod
    def _one_directive(cls, value: str) -> str:
        # Origins and keywords only: a `;` or a line break would smuggle another CSP directive in.
        if not value.strip() or any(c in value for c in ";,\r\n") or not value.isprintable():
            raise ValueError("frame_ancestors: space-separated origins or keywords such as 'none' or 'self'")
        return value.strip()

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value
