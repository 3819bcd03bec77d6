"""Idempotency-Key on mutating POSTs: the first successful answer is stored and replayed.

Only 2xx answers are kept. A 4xx changed nothing, so running the request again is safe and
answers from the current state (a refused session may be admitted once the gate opens, R4).
"""

from __future__ import annotations

import hashlib

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentbilling.api.problems import Problem
from agentbilling.storage.idempotency import IdempotencyStore

HEADER = b"idempotency-key"


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
        principal = hashlib.sha256(headers.get(b"authorization", b"")).hexdigest()[:32] + " " + path
        request_hash = hashlib.sha256(body).hexdigest()
        billing = scope["app"].state.billing
        store = IdempotencyStore(billing.db)
        claim = await anyio.to_thread.run_sync(store.claim, principal, key, request_hash, billing.now())
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
            if 200 <= status < 300:
                await anyio.to_thread.run_sync(store.save, principal, key, status, content_type, b"".join(out))
            else:
                await anyio.to_thread.run_sync(store.release, principal, key)
