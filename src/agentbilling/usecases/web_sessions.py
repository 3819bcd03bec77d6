"""The Billing tab's sign-in: single-use login codes exchanged for server-side sessions, stored as
SHA-256 hashes only and ended at logout, at expiry, or when the user is deleted or changes role."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, insert, select, update

from agentbilling.storage.db import Database
from agentbilling.storage.tables import login_codes, web_sessions

LAST_SEEN_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often per session


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(credential: str) -> tuple[str, str] | None:
    """A code or session id is `<tenant>.<random>`: the tenant keys the row (tables are tenant-first)."""
    tenant_id, dot, rest = credential.rpartition(".")
    if not dot or not tenant_id or not rest or len(credential) > 200:
        return None
    return tenant_id, rest


@dataclass(frozen=True, slots=True)
class WebSession:
    tenant_id: str
    user_id: str
    expires_at: datetime


class WebSessions:
    def __init__(self, db: Database, *, code_seconds: int, session_seconds: int) -> None:
        self.db = db
        self.code_seconds = code_seconds
        self.session_seconds = session_seconds

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    def new_login_code(self, tenant_id: str, user_id: str) -> tuple[str, datetime]:
        """A login link's code and when it expires."""
        code = f"{tenant_id}.{secrets.token_urlsafe(32)}"
        now = self.now()
        expires_at = now + timedelta(seconds=self.code_seconds)
        with self.db.write() as conn:
            conn.execute(insert(login_codes).values(tenant_id=tenant_id, code_hash=_hash(code), user_id=user_id,
                                                    created_at=now, expires_at=expires_at))
        return code, expires_at

    def code_user(self, code: str) -> tuple[str, str] | None:
        """(tenant, user) of an unused, unexpired code, without using it (the confirm page)."""
        parts = _split(code)
        if parts is None:
            return None
        with self.db.read() as conn:
            row = conn.execute(select(login_codes.c.user_id).where(
                login_codes.c.tenant_id == parts[0], login_codes.c.code_hash == _hash(code),
                login_codes.c.used_at.is_(None), login_codes.c.expires_at > self.now())).one_or_none()
        return None if row is None else (parts[0], row.user_id)

    def exchange(self, code: str, replacing: str | None = None) -> tuple[str, WebSession] | None:
        """Uses the code (once: a second try finds it used) and opens a session: its id (for the
        cookie) and what it is. The session being replaced, if any, ends in the same transaction."""
        parts = _split(code)
        if parts is None:
            return None
        tenant_id = parts[0]
        now = self.now()
        with self.db.write() as conn:
            row = conn.execute(select(login_codes.c.user_id).where(
                login_codes.c.tenant_id == tenant_id, login_codes.c.code_hash == _hash(code),
                login_codes.c.used_at.is_(None), login_codes.c.expires_at > now)).one_or_none()
            if row is None:
                return None
            used = conn.execute(update(login_codes).where(
                login_codes.c.tenant_id == tenant_id, login_codes.c.code_hash == _hash(code),
                login_codes.c.used_at.is_(None)).values(used_at=now))
            if used.rowcount != 1:
                return None  # a concurrent exchange of the same code won
            session_id = f"{tenant_id}.{secrets.token_urlsafe(32)}"
            expires_at = now + timedelta(seconds=self.session_seconds)
            conn.execute(insert(web_sessions).values(tenant_id=tenant_id, id_hash=_hash(session_id),
                                                     user_id=row.user_id, created_at=now, last_seen_at=now,
                                                     expires_at=expires_at))
            if replacing:
                self._revoke(conn, replacing, now)
        return session_id, WebSession(tenant_id, row.user_id, expires_at)

    def session(self, session_id: str) -> WebSession | None:
        """The live session of a cookie's id, or None (unknown, expired or ended)."""
        parts = _split(session_id)
        if parts is None:
            return None
        tenant_id = parts[0]
        now = self.now()
        where = (web_sessions.c.tenant_id == tenant_id, web_sessions.c.id_hash == _hash(session_id))
        with self.db.read() as conn:
            row = conn.execute(select(web_sessions).where(*where)).one_or_none()
        if row is None or row.revoked_at is not None or row.expires_at <= now:
            return None
        if now - row.last_seen_at >= LAST_SEEN_EVERY:
            with self.db.write() as conn:
                conn.execute(update(web_sessions).where(*where).values(last_seen_at=now))
        return WebSession(tenant_id, row.user_id, row.expires_at)

    def purge(self, keep: timedelta = timedelta(days=1)) -> int:
        """Deletes codes and sessions that expired (or ended) more than `keep` ago: rows that can
        never open anything again. How many went."""
        before = self.now() - keep
        with self.db.write() as conn:
            codes = conn.execute(delete(login_codes).where(login_codes.c.expires_at < before)).rowcount
            sessions = conn.execute(delete(web_sessions).where(
                (web_sessions.c.expires_at < before) | (web_sessions.c.revoked_at < before))).rowcount
        return codes + sessions

    def end(self, session_id: str) -> None:
        with self.db.write() as conn:
            self._revoke(conn, session_id, self.now())

    @staticmethod
    def _revoke(conn: Connection, session_id: str, now: datetime) -> None:
        parts = _split(session_id)
        if parts is not None:
            conn.execute(update(web_sessions).where(
                web_sessions.c.tenant_id == parts[0], web_sessions.c.id_hash == _hash(session_id),
                web_sessions.c.revoked_at.is_(None)).values(revoked_at=now))


def end_user_sessions(conn: Connection, tenant_id: str, user_id: str) -> None:
    """Ends every session of a user, in the caller's transaction (deleted, or their role changed)."""
    conn.execute(update(web_sessions).where(
        web_sessions.c.tenant_id == tenant_id, web_sessions.c.user_id == user_id,
        web_sessions.c.revoked_at.is_(None)).values(revoked_at=datetime.now(UTC)))
