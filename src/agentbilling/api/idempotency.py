"""Idempotency-Key on mutating POSTs: the first successful answer is stored and replayed.

Only 2xx answers are kept. A 4xx changed nothing, so running the request again is safe and
answers from the current state (a refused session may be admitted once the gate opens, R4).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentbilling.api.problems import Problem
from agentbilling.storage.idempotency import IdempotencyStore

HEADER = b"idempotency-key"


def _still_authorized(billing, authorization: bytes) -> bool:
    """A stored answer is replayed only to a credential that still opens the API (a revoked key does not)."""
    scheme, _, value = authorization.decode("latin-1").partition(" ")
    token = value.strip()
    if scheme.lower() != "bearer" or not token:
        return False
    expected = billing.settings.operator_key
    if expected and hmac.compare_digest(token.encode(), expected.encode()):
        return True
    return billing.tenant_for_api_key(token) is not None or billing.user_for_token(token) is not None


class IdempotencyMiddleware:
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

        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        path = scope["path"]
        # The caller is whoever the credential names: the bearer header, else the session cookie.
        credential = headers.get(b"authorization", b"") + b"\n" + headers.get(b"cookie", b"")
        principal = hashlib.sha256(credential + b"\n" + path.encode()).hexdigest()
        request_hash = hashlib.sha256(body).hexdigest()
        billing = scope["app"].state.billing
        store = IdempotencyStore(billing.db)
        # Wall-clock time: how long a request has been in progress is not business time.
        claim = await anyio.to_thread.run_sync(store.claim, principal, key, request_hash, datetime.now(UTC))
        if claim.state == "replay" and not await anyio.to_thread.run_sync(
            _still_authorized, billing, headers.get(b"authorization", b"")
        ):
            problem = Problem(401, "unauthorized", "The credential of this request is no longer valid.",
                              headers={"WWW-Authenticate": "Bearer"})
            return await problem.response(path)(scope, receive, send)
        if claim.state == "replay":
            await send({"type": "http.response.start", "status": claim.status_code,
                        "headers": [(b"content-type", claim.content_type.encode()),
                                    (b"idempotent-replayed", b"true")]})
            await send({"type": "http.response.body", "body": claim.body})
            return
        if claim.state == "mismatch":
            problem = Problem(422, "idempotency-key-reused",
                              "This Idempotency-Key was used with a different request body.")
            return await problem.response(path)(scope, receive, send)
        if claim.state == "in_progress":
            problem = Problem(409, "idempotency-key-in-use", "A request with this Idempotency-Key is in progress.")
            return await problem.response(path)(scope, receive, send)

        sent_body = False

        async def replay_receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status = 500
        content_type = "application/json"
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
            await send(message)

        try:
            await self.app(scope, replay_receive, capture)
        finally:
            with anyio.CancelScope(shield=True):  # a cancelled request still settles its claim
                if 200 <= status < 300:
                    await anyio.to_thread.run_sync(store.save, principal, key, status, content_type, b"".join(out))
                else:
                    await anyio.to_thread.run_sync(store.release, principal, key)
