"""Secrets: API keys (a fast hash of a high-entropy key) and signed, expiring user tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer

API_KEY_PREFIX = "ab_"


def new_api_key() -> tuple[str, str, str]:
    """(public id, the key itself, its hash). 256 random bits: a plain SHA-256 is enough."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return "key_" + secrets.token_hex(8), key, hash_api_key(key)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_nonce() -> str:
    return secrets.token_hex(16)


class TokenSigner:
    """User tokens signed with the deployment's secret; they expire by the wall clock."""

    def __init__(self, secret_key: str, ttl_seconds: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt="agentbilling.user-token")
        self.ttl_seconds = ttl_seconds

    def issue(self, tenant_id: str, user_id: str, nonce: str) -> tuple[str, datetime]:
        token = self._serializer.dumps([tenant_id, user_id, nonce])
        return token, datetime.now(UTC) + timedelta(seconds=self.ttl_seconds)

    def read(self, token: str) -> tuple[str, str, str] | None:
        """(tenant, user, nonce), or None for a forged, malformed or expired token."""
        try:
            tenant_id, user_id, nonce = self._serializer.loads(token, max_age=self.ttl_seconds)
        except (BadSignature, ValueError, TypeError):
            return None
        return tenant_id, user_id, nonce
