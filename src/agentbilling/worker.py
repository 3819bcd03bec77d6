"""The worker: applies what comes due as time passes, records the notices that came due and sends their
emails and webhooks; `serve` runs one in a thread, `agentbilling worker` one on its own."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

from agentbilling.client import Billing
from agentbilling.usecases.results import PassReport

log = logging.getLogger(__name__)


class Worker:
    """One worker; several may run at once on one database.

    Each piece of work is claimed under a row lock or made under a unique id, so none is done twice. It
    logs each pass that did something; `GET /v1/worker` says how far behind the workers are."""
    def __init__(self, billing: Billing, interval: float) -> None:
        self.billing = billing
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0

    def run_once(self) -> PassReport | None:
        report = None
        started = time.monotonic()
        try:
            report = self.billing.run_due()
            self.billing.web_sessions.purge()  # spent login codes and ended sessions (wall clock)
            expired = self.billing.expire_idempotency_keys()
            if expired:
                log.info("worker: %d expired idempotency keys deleted", expired)
        except Exception:  # one bad pass must not stop the next: log it, try again later
            log.exception("worker: a pass failed; the next one runs in %ss", self.interval)
        self.passes += 1
        if report is not None and any(dataclasses.astuple(report)):
            log.info("worker: %d subscriptions advanced, %d notices recorded, %d emails sent, %d webhooks delivered "
                     "(%.2fs)", *dataclasses.astuple(report), time.monotonic() - started)
        return report

    def run(self) -> None:
        """Pass after pass until stopped."""
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval)

    def start(self) -> Worker:
        self._thread = threading.Thread(target=self.run, name="agentbilling-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
