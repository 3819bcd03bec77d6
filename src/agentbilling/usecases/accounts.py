"""Tenants, their API keys and their users: the operator's side of the service."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Unpack

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from agentbilling.domain.errors import AlreadyExists, InvalidInput, NotFound
from agentbilling.domain.inputs import identifier, tenant_identifier
from agentbilling.domain.subscription import Status
from agentbilling.domain.trial import Trial
from agentbilling.storage.db import Database
from agentbilling.storage.tables import api_keys, subscriptions, tenants, users
from agentbilling.usecases.results import NewApiKey, Tenant, User
from agentbilling.usecases.tokens import new_api_key, new_nonce
from agentbilling.usecases.web_sessions import end_user_sessions


class Accounts:
    def __init__(self, db: Database, *, trial_days: int, trial_sessions: int, billing_roles: frozenset[str],
                 billing_enabled: bool, roles: frozenset[str] = frozenset()) -> None:
        self.db = db
        self.trial_days = trial_days
        self.trial_sessions = trial_sessions
        self.billing_roles = billing_roles
        self.roles = roles | billing_roles  # the roles a user may have
        self.billing_enabled = billing_enabled

    def _check_role(self, role: str | None) -> None:
        if role is not None and role not in self.roles:
            allowed = ", ".join(sorted(self.roles))
            raise InvalidInput(f"role must be one of the configured roles ({allowed}), not {role!r}.")

    # -- tenants ---------------------------------------------------------------------------

    def create_tenant(self, tenant_id: str, name: str, billing_email: str, now: datetime) -> Tenant:
        """A new tenant starts its one free trial (R5, R6)."""
        tenant_id = tenant_identifier(tenant_id)
        trial = Trial.start(now, days=self.trial_days, sessions=self.trial_sessions)
        try:
            with self.db.write() as conn:
                conn.execute(insert(tenants).values(id=tenant_id, name=name, billing_email=billing_email,
                                                    created_at=now))
                conn.execute(insert(subscriptions).values(
                    tenant_id=tenant_id, status=Status.TRIALING.value, trial_started_at=trial.started_at,
                    trial_ends_at=trial.ends_at, trial_sessions=trial.sessions, updated_at=now,
                ))
        except IntegrityError:
            raise AlreadyExists(f"A tenant with id {tenant_id!r} already exists.") from None
        return Tenant(tenant_id, name, billing_email, now)

    def get_tenant(self, tenant_id: str) -> Tenant:
        with self.db.read() as conn:
            row = conn.execute(select(tenants).where(tenants.c.id == tenant_id)).one_or_none()
        if row is None:
            raise NotFound(f"No tenant {tenant_id!r}.")
        return Tenant(row.id, row.name, row.billing_email, row.created_at)

    def update_tenant(self, tenant_id: str, *, name: str | None, billing_email: str | None) -> Tenant:
        changes = {k: v for k, v in {"name": name, "billing_email": billing_email}.items() if v is not None}
        if changes:
            with self.db.write() as conn:
                if conn.execute(update(tenants).where(tenants.c.id == tenant_id).values(**changes)).rowcount == 0:
                    raise NotFound(f"No tenant {tenant_id!r}.")
        return self.get_tenant(tenant_id)

    # -- API keys --------------------------------------------------------------------------

    def create_api_key(self, tenant_id: str, now: datetime) -> NewApiKey:
        self.get_tenant(tenant_id)
        key_id, key, key_hash = new_api_key()
        with self.db.write() as conn:
            conn.execute(insert(api_keys).values(tenant_id=tenant_id, id=key_id, key_hash=key_hash, created_at=now))
        return NewApiKey(key_id, key)

    def revoke_api_key(self, tenant_id: str, key_id: str, now: datetime) -> None:
        with self.db.write() as conn:
            result = conn.execute(
                update(api_keys)
                .where(api_keys.c.tenant_id == tenant_id, api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            if result.rowcount == 0:
                raise NotFound(f"No active API key {key_id!r} for tenant {tenant_id!r}.")

    # -- users -----------------------------------------------------------------------------

    def _user(self, row: Row[Unpack[tuple[Any, ...]]]) -> User:
        visible = self.billing_enabled and row.role in self.billing_roles
        return User(row.tenant_id, row.id, row.email, row.role, visible)

    def create_user(self, tenant_id: str, user_id: str, email: str, role: str, now: datetime) -> User:
        user_id = identifier(user_id, "id")
        self._check_role(role)
        if "/" in user_id:
            raise InvalidInput("A user id must not contain '/': it could never be addressed.")
        self.get_tenant(tenant_id)
        try:
            with self.db.write() as conn:
                conn.execute(insert(users).values(tenant_id=tenant_id, id=user_id, email=email, role=role,
                                                  auth_nonce=new_nonce(), created_at=now))
        except IntegrityError:
            raise AlreadyExists(f"A user with id {user_id!r} already exists in tenant {tenant_id!r}.") from None
        return self.get_user(tenant_id, user_id)

    def _user_row(self, tenant_id: str, user_id: str) -> Row[Unpack[tuple[Any, ...]]]:
        with self.db.read() as conn:
            row = conn.execute(select(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id)).one_or_none()
        if row is None:
            raise NotFound(f"No user {user_id!r} in tenant {tenant_id!r}.")
        return row

    def get_user(self, tenant_id: str, user_id: str) -> User:
        return self._user(self._user_row(tenant_id, user_id))

    def user_nonce(self, tenant_id: str, user_id: str) -> str:
        nonce: str = self._user_row(tenant_id, user_id).auth_nonce
        return nonce

    def update_user(self, tenant_id: str, user_id: str, *, email: str | None, role: str | None) -> User:
        self._check_role(role)
        changes = {k: v for k, v in {"email": email, "role": role}.items() if v is not None}
        if changes:
            with self.db.write() as conn:
                where = (users.c.tenant_id == tenant_id, users.c.id == user_id)
                before = conn.execute(select(users.c.role).where(*where)).one_or_none()
                if before is None or conn.execute(update(users).where(*where).values(**changes)).rowcount == 0:
                    raise NotFound(f"No user {user_id!r} in tenant {tenant_id!r}.")
                if role is not None and role != before.role:
                    end_user_sessions(conn, tenant_id, user_id)  # a new role signs in anew
        return self.get_user(tenant_id, user_id)

    def delete_user(self, tenant_id: str, user_id: str) -> None:
        """Removes the user; their tokens carry the old row's nonce and stop working at once, and
        their Billing tab sessions end."""
        with self.db.write() as conn:
            stmt = delete(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id)
            if conn.execute(stmt).rowcount == 0:
                raise NotFound(f"No user {user_id!r} in tenant {tenant_id!r}.")
            end_user_sessions(conn, tenant_id, user_id)
