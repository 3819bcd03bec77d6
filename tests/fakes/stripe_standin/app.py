"""The HTTP side: authentication, body parsing, idempotency replay, dispatch and error rendering."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from . import api_core, api_invoices, api_subscriptions, forms, hosted
from .errors import StripeError
from .routing import Request, Response, Router, Services

API_ROUTES = Router()
API_ROUTES.include(api_core.routes)
API_ROUTES.include(api_subscriptions.routes)
API_ROUTES.include(api_invoices.routes)
PUBLIC_ROUTES = hosted.routes  # pages and test-only actions a person does on hosted pages: no API key


class Idempotency:
    """Replays the first response to a POST with the same key, as Stripe does (per API key)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], tuple[str, Response]] = {}

    def replay(self, api_key: str, key: str, fingerprint: str) -> Response | None:
        with self._lock:
            hit = self._seen.get((api_key, key))
        if hit is None:
            return None
        if hit[0] != fingerprint:
            raise StripeError(
                400, "Keys for idempotent requests can only be used with the same parameters they were first used "
                f"with. Try using a key other than '{key}' if you meant to execute a different request.",
                type="idempotency_error")
        return hit[1]

    def remember(self, api_key: str, key: str, fingerprint: str, response: Response) -> None:
        with self._lock:
            self._seen.setdefault((api_key, key), (fingerprint, response))


def make_handler(svc: Services, api_key: str | None) -> type[BaseHTTPRequestHandler]:
    idempotency = Idempotency()

    class Handler(BaseHTTPRequestHandler):
        server_version = "stripe-standin/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def _handle(self, method: str) -> None:
            extra: dict[str, str] = {}
            try:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                params = forms.parse_form(url.query)
                params.update(forms.parse_body(raw, self.headers.get("Content-Type", "")))
                req = Request(method, url.path.rstrip("/") or "/", params, dict(self.headers.items()))
                if req.path.startswith("/v1/"):
                    key = _authenticate(self.headers.get("Authorization"), api_key)
                    idem = self.headers.get("Idempotency-Key") if method == "POST" else None
                    fingerprint = f"{method} {req.path} {raw!r}"
                    replayed = idempotency.replay(key, idem, fingerprint) if idem else None
                    if replayed is not None:
                        response, extra["Idempotent-Replayed"] = replayed, "true"
                    else:
                        response = API_ROUTES.dispatch(svc, req)
                        if idem and response.status < 500:
                            idempotency.remember(key, idem, fingerprint, response)
                else:
                    response = PUBLIC_ROUTES.dispatch(svc, req)
            except StripeError as exc:
                response = Response(exc.status, exc.body())
            except Exception as exc:  # noqa: BLE001 - a bug in the stand-in: answer like Stripe's api_error, keep serving
                response = Response(500, {"error": {"type": "api_error",
                                                    "message": f"stand-in failure: {type(exc).__name__}: {exc}"}})
                svc.clocks.failures.append(repr(exc))
            self._send(response, extra)

        def _send(self, response: Response, extra: dict[str, str]) -> None:
            if response.content_type == "application/json":
                body = json.dumps(response.body, indent=2).encode("utf-8")
            else:
                body = str(response.body).encode("utf-8")
            self.send_response(response.status)
            self.send_header("Content-Type", f"{response.content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Request-Id", "req_" + secrets.token_hex(7))
            self.send_header("Stripe-Version", svc.state.config.api_version)
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _authenticate(header: str | None, expected: str | None) -> str:
    """Bearer (or HTTP Basic, as curl -u sends) secret test key; returns the key."""
    if not header:
        raise StripeError.unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization header, "
            "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').")
    scheme, _, value = header.partition(" ")
    key = value.strip()
    if scheme.lower() == "basic":
        try:
            key = base64.b64decode(key).decode("utf-8").partition(":")[0]
        except ValueError:
            key = ""
    elif scheme.lower() != "bearer":
        key = ""
    if not key.startswith(("sk_test_", "rk_test_")) or (expected is not None and key != expected):
        shown = (key[:8] + "*" * 4 + key[-4:]) if len(key) > 12 else key
        raise StripeError.unauthorized(f"Invalid API Key provided: {shown}")
    return key
