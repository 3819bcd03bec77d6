"""Advancing clocks: everything due up to the target, in time order, one step at a time.

Each step holds the state lock while it changes objects, then releases it and waits until the
webhooks it caused were answered; a renewal pauses between `invoice.created` and finalizing so
the receiver can add invoice items to the draft. A clock is `ready` again only after every
webhook caused by the advance was delivered (or given up after retries).
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Iterator
from typing import Any

from . import invoicing, schedules, subscriptions
from .errors import StripeError
from .store import State
from .webhooks import Deliverer

# At the same instant: phase switches first (a renewal then bills the new price), then endings.
_ORDER = {"phase": 0, "cancel": 1, "expire": 1, "renew": 2, "retry": 3}
_MAX_STEPS = 10_000


def due_actions(st: State, clock_id: str) -> list[tuple[int, int, int, str, dict[str, Any]]]:
    """(time, order, seq, kind, object) for everything scheduled on this clock."""
    def mine(o: dict[str, Any]) -> bool:
        return st.clock_id_of(o) == clock_id

    due: list[tuple[int, int, int, str, dict[str, Any]]] = []
    for sched in st.all("subscription_schedule", mine):
        t = schedules.next_boundary(sched)
        if t is not None:
            due.append((t, _ORDER["phase"], sched["_seq"], "phase", sched))
    for sub in st.all("subscription", mine):
        if sub["status"] in subscriptions.LIVE_STATUSES:
            if sub["cancel_at"] is not None and sub["cancel_at"] <= sub["current_period_end"]:
                due.append((sub["cancel_at"], _ORDER["cancel"], sub["_seq"], "cancel", sub))
            else:
                due.append((sub["current_period_end"], _ORDER["renew"], sub["_seq"], "renew", sub))
        elif sub["status"] == "incomplete":
            t = sub["created"] + st.config.incomplete_expiry_seconds
            due.append((t, _ORDER["expire"], sub["_seq"], "expire", sub))
    for inv in st.all("invoice", mine):
        if inv["status"] == "open" and inv["next_payment_attempt"] is not None:
            due.append((inv["next_payment_attempt"], _ORDER["retry"], inv["_seq"], "retry", inv))
    return sorted(due, key=lambda a: a[:3])


def _run(st: State, kind: str, obj: dict[str, Any], at: int) -> Iterator[None]:
    if kind == "phase":
        schedules.cross_boundary(st, obj, at)
    elif kind == "cancel":
        subscriptions.cancel_now(st, obj, at)
    elif kind == "expire":
        subscriptions.expire_incomplete(st, obj, at)
    elif kind == "renew":
        yield from subscriptions.renew(st, obj, at)
    elif kind == "retry":
        invoicing.attempt_payment(st, obj, at, automatic=True)


class ClockRunner:
    """Starts advances (one thread each) and lets callers wait for a clock to be ready."""

    def __init__(self, st: State, webhooks: Deliverer) -> None:
        self.st, self.webhooks = st, webhooks
        self._threads: dict[str, threading.Thread] = {}
        self.failures: list[str] = []

    def start_advance(self, clock: dict[str, Any], target: int) -> None:
        """Begin moving `clock` to `target` (caller holds the lock); returns at once, status `advancing`."""
        if clock["status"] == "advancing":
            raise StripeError.invalid("The test clock is already advancing; wait until its status is `ready`.")
        if target < clock["frozen_time"]:
            raise StripeError.invalid("Cannot advance a test clock backwards: frozen_time must not be before "
                                      f"the current frozen_time ({clock['frozen_time']}).", param="frozen_time")
        clock["status"] = "advancing"
        clock["status_details"] = {"advancing": {"target_frozen_time": target}}
        if clock["id"] != self.st.default_clock_id:
            self.st.emit("test_helpers.test_clock.advancing", clock)
        thread = threading.Thread(target=self._advance, args=(clock["id"], target),
                                  name=f"stripe-standin-advance-{clock['id']}", daemon=True)
        self._threads[clock["id"]] = thread
        thread.start()

    def wait_ready(self, clock_id: str, timeout: float = 120.0) -> None:
        thread = self._threads.get(clock_id)
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"clock {clock_id} still advancing after {timeout}s")
        with self.st.lock:
            if self.st.clock(clock_id)["status"] == "internal_failure":
                raise RuntimeError(f"advancing {clock_id} failed:\n" + "\n".join(self.failures))

    def join_all(self, timeout: float = 30.0) -> None:
        for thread in list(self._threads.values()):
            thread.join(timeout)

    def _advance(self, clock_id: str, target: int) -> None:
        st = self.st
        try:
            for _ in range(_MAX_STEPS):
                with st.lock:
                    clock = st.clock(clock_id)
                    due = [a for a in due_actions(st, clock_id) if a[0] <= target]
                    if not due:
                        clock["frozen_time"] = target
                        break
                    t, _, _, kind, obj = due[0]
                    at = max(t, clock["frozen_time"])
                    clock["frozen_time"] = at
                    steps = _run(st, kind, obj, at)
                    more = next(steps, StopIteration) is not StopIteration
                while more:
                    self.webhooks.wait()
                    with st.lock:
                        more = next(steps, StopIteration) is not StopIteration
                self.webhooks.wait()
            else:
                raise RuntimeError(f"more than {_MAX_STEPS} steps while advancing {clock_id}")
            self.webhooks.wait()
            with st.lock:
                clock = st.clock(clock_id)
                clock["status"], clock["status_details"] = "ready", {}
                if clock_id != st.default_clock_id:
                    st.emit("test_helpers.test_clock.ready", clock)
        except Exception:  # noqa: BLE001 - recorded and shown by wait_ready; the thread must not die silently
            self.failures.append(traceback.format_exc())
            with st.lock:
                st.clock(clock_id)["status"] = "internal_failure"
