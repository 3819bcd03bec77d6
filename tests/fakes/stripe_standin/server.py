"""`StripeStandin`: the stand-in started in-process (a thread serving 127.0.0.1 on a free port).

    with StripeStandin(webhook_url=None, webhook_secret="whsec_test") as s:
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": s.url})
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import datetime
from http.server import ThreadingHTTPServer
from typing import Any, Self

from . import api_core, hosted
from .app import make_handler
from .clock import ClockRunner
from .periods import to_timestamp
from .routing import Services
from .store import Config, State
from .webhooks import Deliverer

try:  # the API version the installed SDK speaks, echoed in events
    from stripe import _api_version

    API_VERSION = _api_version._ApiVersion.CURRENT
except Exception:  # noqa: BLE001  # pragma: no cover - the SDK is a test dependency
    API_VERSION = "2025-03-31.basil"


class StripeStandin:
    """A local server that plays Stripe's API for tests; state in memory, webhooks signed for real."""

    def __init__(
        self,
        webhook_url: str | None = None,
        webhook_secret: str = "whsec_test",
        *,
        api_key: str | None = None,
        start_time: int | datetime | None = None,
        prices: Iterable[dict[str, Any]] = (),
        retry_days: tuple[int, ...] = (3, 5),
        on_retries_exhausted: str = "past_due",
        webhook_retry_delays: tuple[float, ...] = (0.05, 0.25, 1.0),
        webhook_timeout: float = 15.0,
    ) -> None:
        """`api_key`: accept only this key (default: any `sk_test_...`). `start_time`: the default clock's
        frozen time (default: now). `prices`: preloaded, e.g. `{"id": "price_starter", "unit_amount": 4900}`.
        `on_retries_exhausted`: "past_due" (leave it), "unpaid" or "cancel"."""
        if on_retries_exhausted not in ("past_due", "unpaid", "cancel"):
            raise ValueError("on_retries_exhausted must be past_due, unpaid or cancel")
        self.api_key = api_key or "sk_test_standin"
        self._only_key = api_key
        self.webhooks = Deliverer(webhook_url, webhook_secret, retry_delays=webhook_retry_delays,
                                  timeout=webhook_timeout)
        config = Config(api_version=API_VERSION, retry_days=tuple(retry_days),
                        on_retries_exhausted=on_retries_exhausted)
        start = to_timestamp(start_time) if start_time is not None else int(time.time())
        self.state = State(config, self.webhooks.enqueue, start)
        self.clocks = ClockRunner(self.state, self.webhooks)
        self._svc = Services(self.state, self.clocks, self.webhooks)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for spec in prices:
            self.add_price(**spec)

    # lifecycle

    def start(self) -> Self:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self._svc, self._only_key))
        self._server.daemon_threads = True
        self.state.config.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="stripe-standin-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.clocks.join_all(timeout=30)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.webhooks.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The API base to give the SDK (`base_addresses={"api": s.url}` or `stripe.api_base = s.url`)."""
        return self.state.config.base_url

    def client(self, api_key: str | None = None, **options: Any) -> Any:
        """A `stripe.StripeClient` pointed at this stand-in."""
        import stripe

        options.setdefault("max_network_retries", 0)
        return stripe.StripeClient(api_key or self.api_key, base_addresses={"api": self.url}, **options)

    # webhooks

    def set_webhook(self, url: str | None, secret: str | None = None) -> None:
        """Where events go from now on (and the signing secret, if given)."""
        self.webhooks.configure(url, secret)

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        """One entry per delivery: event_id, type, url, status delivered/failed/skipped, attempts."""
        return self.webhooks.entries()

    def redeliver(self, event_id: str, wait: bool = True) -> dict[str, Any] | None:
        """Send an event again (signed afresh); returns its delivery entry when `wait`."""
        with self.state.lock:
            event = self.state.render(self.state.get(event_id, "event"))
        ticket = self.webhooks.enqueue(event, redelivery=True)
        if not wait:
            return None
        self.webhooks.wait(ticket)
        return [e for e in self.deliveries if e["event_id"] == event_id][-1]

    def wait_for_webhooks(self, timeout: float = 30.0) -> None:
        if not self.webhooks.wait(timeout=timeout):
            raise TimeoutError("webhooks still being delivered")

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        """Every event emitted so far, oldest first (optionally of one type)."""
        with self.state.lock:
            return [self.state.render(e) for e in self.state.all("event", lambda e: type in (None, e["type"]))]

    # objects and clocks

    def get(self, object_id: str) -> dict[str, Any]:
        with self.state.lock:
            return self.state.render(self.state.objects[object_id])

    def add_price(self, unit_amount: int, currency: str = "usd", interval: str | None = "month",
                  id: str | None = None, product_name: str | None = None, **extra: Any) -> dict[str, Any]:
        """Preload a price (and its product) without going through the API."""
        params: dict[str, Any] = {"unit_amount": unit_amount, "currency": currency, "id": id,
                                  "product_data": {"name": product_name or id or "Plan"}, **extra}
        if interval:
            params["recurring"] = {"interval": interval}
        with self.state.lock:
            return self.state.render(api_core.create_price(self.state, params, self.state.now()))

    @property
    def default_clock(self) -> str:
        """The clock of objects created without `test_clock` (advance it like any test clock)."""
        return self.state.default_clock_id

    def now(self, clock_id: str | None = None) -> int:
        with self.state.lock:
            return int(self.state.clock(clock_id)["frozen_time"])

    def advance(self, to: int | datetime, clock_id: str | None = None, timeout: float = 120.0) -> dict[str, Any]:
        """Advance a clock (default: the stand-in's) and block until it is `ready`."""
        clock_id = clock_id or self.default_clock
        with self.state.lock:
            self.clocks.start_advance(self.state.get(clock_id, "test_helpers.test_clock"), to_timestamp(to))
        self.clocks.wait_ready(clock_id, timeout)
        return self.get(clock_id)

    # what a person does on the hosted pages

    def complete_checkout(self, session_id: str, card: str = "4242424242424242") -> dict[str, Any]:
        return hosted.complete_checkout(self._svc, session_id, card)

    def portal_cancel(self, customer_id: str) -> dict[str, Any]:
        return hosted.portal_cancel(self._svc, customer_id, True)

    def portal_resume(self, customer_id: str) -> dict[str, Any]:
        return hosted.portal_cancel(self._svc, customer_id, False)

    def add_card(self, customer_id: str, card: str) -> dict[str, Any]:
        return hosted.add_card(self._svc, customer_id, card)
