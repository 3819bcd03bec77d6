"""Checks every request passes before anything reads it: no control characters in its path or query
(422), no body over the size limit (413). Outermost, so the gate's fast path gets them too."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentbilling.api import problems

# C0 and C1 control characters and DEL: never part of an id, a name or a query value of ours.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CONTROL_IN_URL = "The request's path or query contains a control character (ids reject them)."


def has_control(text: str) -> bool:
    return CONTROL.search(text) is not None


def too_large(limit: int) -> problems.Problem:
    return problems.Problem(413, "request-too-large", f"The request body is larger than {limit} bytes.")


class RequestGuards:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        query = unquote_to_bytes(scope.get("query_string", b"").replace(b"+", b" ")).decode("utf-8", "replace")
        if has_control(scope["path"]) or has_control(query):
            return await problems.Problem(422, "invalid-request", CONTROL_IN_URL).response(scope["path"])(
                scope, receive, send)
        length = _content_length(scope)
        limit = self.max_body_bytes
        if length is not None and length > limit:
            return await too_large(limit).response(scope["path"])(scope, receive, send)
        if length is not None:
            return await self.app(scope, receive, send)
        # No Content-Length (chunked): read up to the limit before anyone parses it.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                return await too_large(limit).response(scope["path"])(scope, receive, send)
            chunks.append(body)
            if not message.get("more_body"):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
