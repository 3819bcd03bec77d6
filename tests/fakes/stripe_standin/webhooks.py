"""Webhook delivery: one ordered queue, Stripe-signed POSTs, quick retries on failure, and a log.

The signature is Stripe's v1 scheme: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
"<t>.<body>" keyed with the whsec secret>`, over the exact bytes sent, so
`stripe.Webhook.construct_event(body, header, secret)` accepts it. `t` is wall-clock time
(signature tolerance is security time), whatever the test clocks say.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from typing import Any


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header for `payload`."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode("utf-8"), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class Deliverer:
    """Delivers events in the order they were emitted, from one background thread."""

    def __init__(self, url: str | None, secret: str, *, retry_delays: tuple[float, ...] = (0.05, 0.25, 1.0),
                 timeout: float = 15.0) -> None:
        self.url, self.secret = url, secret
        self.retry_delays, self.timeout = retry_delays, timeout
        self.log: list[dict[str, Any]] = []
        self._queue: deque[tuple[dict[str, Any], bool]] = deque()
        self._cond = threading.Condition()
        self._enqueued = self._finished = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="stripe-standin-webhooks", daemon=True)
        self._thread.start()

    def configure(self, url: str | None, secret: str | None = None) -> None:
        with self._cond:
            self.url = url
            if secret is not None:
                self.secret = secret

    def enqueue(self, event: dict[str, Any], *, redelivery: bool = False) -> int:
        """Queue an event; returns its ticket for `wait`."""
        with self._cond:
            self._queue.append((event, redelivery))
            self._enqueued += 1
            self._cond.notify_all()
            return self._enqueued

    def last_ticket(self) -> int:
        with self._cond:
            return self._enqueued

    def wait(self, ticket: int | None = None, timeout: float = 60.0) -> bool:
        """Block until every event up to `ticket` (default: all queued so far) was delivered or given up."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._enqueued if ticket is None else ticket
            while self._finished < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                self._cond.wait(left)
            return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=self.timeout + 5)

    def entries(self) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(e, attempts=list(e["attempts"])) for e in self.log]

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                event, redelivery = self._queue.popleft()
                url, secret = self.url, self.secret
            entry = self._deliver(event, url, secret, redelivery)
            with self._cond:
                self.log.append(entry)
                self._finished += 1
                self._cond.notify_all()

    def _deliver(self, event: dict[str, Any], url: str | None, secret: str, redelivery: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"event_id": event["id"], "type": event["type"], "url": url,
                                 "redelivery": redelivery, "status": "skipped", "attempts": []}
        if not url:
            return entry  # no endpoint configured: the event is still retrievable by id
        payload = json.dumps(event, indent=2)
        for delay in (0.0, *self.retry_delays):
            if delay:
                time.sleep(delay)
            code, error = self._post(url, payload, secret)
            entry["attempts"].append({"at": time.time(), "status_code": code, "error": error})
            if code is not None and 200 <= code < 300:
                entry["status"] = "delivered"
                return entry
            with self._cond:
                if self._closed:
                    break
        entry["status"] = "failed"
        return entry

    def _post(self, url: str, payload: str, secret: str) -> tuple[int | None, str | None]:
        request = urllib.request.Request(url, data=payload.encode("utf-8"), method="POST", headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": sign(payload, secret),
        })
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
                return response.status, None
        except urllib.error.HTTPError as exc:
            exc.read()
            exc.close()
            return exc.code, f"HTTP {exc.code}"
        except (OSError, urllib.error.URLError) as exc:
            return None, f"{type(exc).__name__}: {exc}"
