"""A tiny webhook receiver for tests: verifies each delivery with `stripe.Webhook.construct_event`.

`on_event(event) -> int | None` may act on an event (e.g. add invoice items on `invoice.created`)
and choose the HTTP status to answer (default 200).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import stripe


class WebhookReceiver:
    def __init__(self, secret: str = "whsec_test") -> None:
        self.secret = secret
        self.events: list[dict[str, Any]] = []  # verified events, in arrival order
        self.rejected: list[str] = []  # signature failures
        self.on_event: Callable[[dict[str, Any]], int | None] | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/webhooks/stripe"

    def types(self) -> list[str]:
        """Event types received, in order, leaving out the test clocks' own events."""
        with self._lock:
            return [e["type"] for e in self.events if not e["type"].startswith("test_helpers.")]

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["type"] == event_type]

    def clear(self) -> None:
        with self._lock:
            self.events.clear()

    def __enter__(self) -> Self:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                payload = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver._receive(payload, self.headers.get("Stripe-Signature"))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def _receive(self, payload: bytes, header: str | None) -> int:
        try:
            stripe.Webhook.construct_event(payload, header, self.secret)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            with self._lock:
                self.rejected.append(str(exc))
            return 400
        event = json.loads(payload)
        status = self.on_event(event) if self.on_event else None
        with self._lock:
            self.events.append(event)
        return status or 200
