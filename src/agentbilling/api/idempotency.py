"""Idempotency-Key on mutating POSTs: the first successful answer is stored (its secrets removed) and replayed.
What is kept, for how long, and what a replay answers: README.md, "HTTP API"."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentbilling.api.problems import Problem
from agentbilling.client import IdempotencyStore as IdempotencyKeys

HEADER = b"idempotency-key"
# Answers whose fields carry a secret: (path, the fields stored as null).
SECRET_FIELDS: list[tuple[re.Pattern[str], tuple[str, ...]]] = [
    (re.compile(r"^/v1/tenants/[^/]+/api-keys$"), ("key",)),
    (re.compile(r"^/v1/tenants/[^/]+/users/[^/]+/tokens$"), ("token", "login_url")),
    (re.compile(r"^/v1/webhook-endpoints$"), ("secret",)),
]


def without_secrets(path: str, body: bytes) -> tuple[bytes, tuple[str, ...]]:
    """The answer to store: its secret fields (if the path has any) set to null, and which.

    The secret was shown once, to the first answer; a caller that lost it issues another."""
    for pattern, fields in SECRET_FIELDS:
        if pattern.match(path):
            try:
                data = json.loads(body)
            except ValueError:
                return b"{}", fields
            if isinstance(data, dict):
                data.update({f: None for f in fields if f in data})
            return json.dumps(data, separators=(",", ":")).encode(), fields
    return body, ()


def _still_authorized(billing, authorization: bytes, path: str) -> bool:
    """A stored answer is replayed only to a credential that still has the right to the request:
    the operator key; a live API key of the tenant, on the agent runtime's paths; a user who still
    has billing rights (a revoked key, a deleted user or one moved to a role without billing
    rights gets 401, as the request itself would)."""
    scheme, _, value = authorization.decode("latin-1").partition(" ")
    token = value.strip()
    if scheme.lower() != "bearer" or not token:
        return False
    expected = billing.settings.operator_key
    if expected and hmac.compare_digest(token.encode(), expected.encode()):
        return True
    if path.startswith("/v1/sessions"):
        return billing.tenant_for_api_key(token) is not None
    user = billing.user_for_token(token)
    return user is not None and user.billing_visible


class IdempotencyMiddleware:
    """Stores the first 2xx answer to a key and replays it.

    Only 2xx answers are kept: a 4xx changed nothing, so running the request again is safe and answers
    from the current state (a refused session may be admitted once the gate opens, R4). The answer is
    stored (or the claim released) before it is sent, so a replay sent after the first answer arrived
    gets that answer, never 409 `idempotency-key-in-use`."""
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        key = headers.get(HEADER, b"").decode("latin-1").strip()
        if not key:
            return await self.app(scope, receive, send)
        if len(key) > 255:
            return await Problem(400, "invalid-idempotency-key", "Idempotency-Key is longer than 255 characters.") \
                .response()(scope, receive, send)

        body = await _read_body(receive)
        path = scope["path"]
        # The caller is whoever the credential names: the bearer header, else the session cookie.
        credential = headers.get(b"authorization", b"") + b"\n" + headers.get(b"cookie", b"")
        principal = hashlib.sha256(credential + b"\n" + path.encode()).hexdigest()
        request_hash = hashlib.sha256(body).hexdigest()
        billing = scope["app"].state.billing
        store = billing.idempotency_keys()
        # Wall-clock time: how long a request has been in progress is not business time.
        claim = await anyio.to_thread.run_sync(store.claim, principal, key, request_hash, datetime.now(UTC))
        if claim.state != "new":
            return await _answer_claimed(claim, billing, headers, path, scope, receive, send)
        await self._run_and_settle(store, principal, key, path, body, scope, receive, send)

    async def _run_and_settle(self, store: IdempotencyKeys, principal: str, key: str, path: str, body: bytes,
                              scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request with its claim; its answer is held until the claim is settled, then sent."""
        sent_body = False

        async def replay_receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status = 500
        content_type = "application/json"
        held: list[Message] = []  # the answer, sent once its claim is settled
        out: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type":
                        content_type = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                out.append(message.get("body", b""))
            held.append(message)

        settled = False
        try:
            await self.app(scope, replay_receive, capture)
            with anyio.CancelScope(shield=True):
                await self._settle(store, principal, key, path, status, content_type, b"".join(out))
            settled = True
        finally:
            if not settled:
                with anyio.CancelScope(shield=True):  # a failed or cancelled request still frees its claim
                    await anyio.to_thread.run_sync(store.release, principal, key)
        for message in held:
            await send(message)

    @staticmethod
    async def _settle(store: IdempotencyKeys, principal: str, key: str, path: str, status: int,
                      content_type: str, body: bytes) -> None:
        """Before the answer leaves: a 2xx is stored (without its secrets), anything else frees the key."""
        if 200 <= status < 300:
            stored, _ = without_secrets(path, body)
            await anyio.to_thread.run_sync(store.save, principal, key, status, content_type, stored)
        else:
            await anyio.to_thread.run_sync(store.release, principal, key)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer_claimed(claim: Any, billing: Any, headers: dict[bytes, bytes], path: str,
                          scope: Scope, receive: Receive, send: Send) -> None:
    """A key claimed before: its stored answer (to a caller still authorized), or why not."""
    if claim.state == "replay" and not await anyio.to_thread.run_sync(
        _still_authorized, billing, headers.get(b"authorization", b""), path
    ):
        problem = Problem(401, "unauthorized", "The credential of this request is no longer valid.",
                          headers={"WWW-Authenticate": "Bearer"})
        return await problem.response(path)(scope, receive, send)
    if claim.state == "replay":
        replay_headers = [(b"content-type", claim.content_type.encode()), (b"idempotent-replayed", b"true")]
        _, secret_fields = without_secrets(path, b"")
        if secret_fields:
            replay_headers += [(b"idempotent-secret-removed", ",".join(secret_fields).encode()),
                               (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": claim.status_code, "headers": replay_headers})
        await send({"type": "http.response.body", "body": claim.body})
        return
    if claim.state == "mismatch":
        problem = Problem(422, "idempotency-key-reused",
                          "This Idempotency-Key was used with a different request body.")
        return await problem.response(path)(scope, receive, send)
    problem = Problem(409, "idempotency-key-in-use", "A request with this Idempotency-Key is in progress.")
    return await problem.response(path)(scope, receive, send)
