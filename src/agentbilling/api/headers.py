"""Security headers on every answer: a strict CSP, frame-ancestors, nosniff, no Referer, no-store, HSTS.
Which values, and why: README.md, "HTTP API"; `SecurityHeaders`."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Paths whose answers hold no secret and may be cached: the pages' CSS and JS, and the docs' assets.
CACHEABLE = ("/billing/static/", "/docs/static/")
HSTS = "max-age=31536000; includeSubDomains"


def content_security_policy(frame_ancestors: str) -> str:
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",  # /docs reads /openapi.json
        "base-uri 'none'",
        f"frame-ancestors {frame_ancestors}",
    ])


class SecurityHeaders:
    """Adds the security headers to every answer.

    No Referer: login and portal links carry secrets in their URLs. No-store on all but `CACHEABLE`: pages
    carry CSRF tokens, answers keys, tokens and links. The pages load their script and style from
    /billing/static, so the CSP allows no inline one. HSTS only when the public URL is https."""
    def __init__(self, app: ASGIApp, *, frame_ancestors: str, https: bool) -> None:
        self.app = app
        self.headers: list[tuple[str, str]] = [
            ("Content-Security-Policy", content_security_policy(frame_ancestors)),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
        ]
        if frame_ancestors.strip() == "'none'":
            self.headers.append(("X-Frame-Options", "DENY"))  # for browsers without CSP frame-ancestors
        if https:
            self.headers.append(("Strict-Transport-Security", HSTS))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        cacheable = scope["path"].startswith(CACHEABLE)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers:
                    headers.setdefault(name, value)
                if not cacheable:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)
