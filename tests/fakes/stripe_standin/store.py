"""The stand-in's in-memory state: every object by id, the clocks, event emission and JSON rendering.

Objects are stored as Stripe-shaped dicts; keys starting with `_` are private bookkeeping and
never rendered. One re-entrant lock guards everything; callers hold `state.lock` while reading
or changing objects.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import secrets
import string
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from . import forms
from .errors import StripeError

_ALPHABET = string.ascii_letters + string.digits

# The name Stripe uses for each object type in "No such ..." messages.
_KIND_NAMES = {
    "payment_method": "PaymentMethod",
    "checkout.session": "checkout session",
    "billing_portal.session": "billing portal session",
    "subscription_schedule": "subscription schedule",
    "test_helpers.test_clock": "test clock",
    "invoiceitem": "invoiceitem",
}


@dataclass
class Config:
    """Behaviour switches; the defaults follow the brief and Stripe's usual test settings."""

    base_url: str = ""
    api_version: str = ""
    retry_days: tuple[int, ...] = (3, 5)  # automatic retries, days after the first failed attempt
    on_retries_exhausted: str = "past_due"  # or "cancel" (subscription deleted) or "unpaid"
    incomplete_expiry_seconds: int = 23 * 3600


class State:
    """All objects of one stand-in, the lock around them, and where emitted events go."""

    def __init__(self, config: Config, sink: Callable[[dict[str, Any]], None], start_time: int) -> None:
        self.lock = threading.RLock()
        self.config = config
        self.objects: dict[str, dict[str, Any]] = {}
        self._sink = sink
        self._seq = itertools.count(1)
        self._held: list[dict[str, Any]] | None = None
        self.default_clock_id = "clock_standin_default"
        self.add({
            "id": self.default_clock_id,
            "object": "test_helpers.test_clock",
            "created": start_time,
            "deletes_after": start_time + 30 * 86400,
            "frozen_time": start_time,
            "livemode": False,
            "name": "stand-in default clock (objects without a test clock)",
            "status": "ready",
            "status_details": {},
        })

    # ids and storage

    @staticmethod
    def new_id(prefix: str, length: int = 24) -> str:
        return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj["_seq"] = next(self._seq)
        self.objects[obj["id"]] = obj
        return obj

    def get(self, object_id: str | None, kind: str, param: str = "id") -> dict[str, Any]:
        obj = self.objects.get(object_id or "")
        if obj is None or obj.get("object") != kind or obj.get("deleted"):
            raise StripeError.missing(_KIND_NAMES.get(kind, kind), object_id or "", param)
        return obj

    def all(self, kind: str, where: Callable[[dict[str, Any]], bool] = lambda o: True) -> list[dict[str, Any]]:
        """Objects of a kind, oldest first."""
        found = [o for o in self.objects.values() if o.get("object") == kind and not o.get("deleted") and where(o)]
        return sorted(found, key=lambda o: o["_seq"])

    # clocks

    def clock(self, clock_id: str | None) -> dict[str, Any]:
        return self.objects[clock_id or self.default_clock_id]

    def clock_id_of(self, obj: dict[str, Any] | None) -> str:
        return (obj or {}).get("_clock") or self.default_clock_id

    def now(self, obj: dict[str, Any] | None = None) -> int:
        """The frozen time of the clock the object belongs to (the default clock if none)."""
        return int(self.clock(self.clock_id_of(obj))["frozen_time"])

    def act(self, object_id: str, kind: str, action: Any, expand: Iterable[str] = ()) -> dict[str, Any]:
        """An endpoint that applies one action to one object: under the lock, at the object's clock's
        time, answering with the object as it is afterwards (`action(state, obj, now)`)."""
        with self.lock:
            obj = self.get(object_id, kind)
            action(self, obj, self.now(obj))
            return self.render(obj, expand)

    # rendering

    def render(self, obj: dict[str, Any], expand: Iterable[str] = ()) -> dict[str, Any]:
        out = _public(obj)
        for path in expand:
            out = self._expand(out, path.split("."))
        return out

    def _expand(self, node: Any, parts: list[str]) -> Any:
        if not parts:
            return node
        if isinstance(node, list):
            return [self._expand(item, parts) for item in node]
        if not isinstance(node, dict):
            return node
        key, rest = parts[0], parts[1:]
        value = node.get(key)
        if isinstance(value, str) and value in self.objects:
            value = self.render(self.objects[value])
        if value is not None:
            node[key] = self._expand(value, rest)
        return node

    def list_of(self, items: list[dict[str, Any]], params: dict[str, Any], url: str) -> dict[str, Any]:
        """A Stripe list page: newest first, `limit`, `starting_after`, `ending_before`."""
        newest_first = sorted(items, key=lambda o: (o.get("created", 0), o["_seq"]), reverse=True)
        limit = forms.opt_int(params, "limit") or 10
        if not 1 <= limit <= 100:
            raise StripeError.invalid("This value must be between 1 and 100.", param="limit")
        ids = [o["id"] for o in newest_first]
        after, before = forms.opt_str(params, "starting_after"), forms.opt_str(params, "ending_before")
        if after:
            if after not in ids:
                raise StripeError.missing("object", after, "starting_after")
            newest_first = newest_first[ids.index(after) + 1:]
            page = newest_first[:limit]
        elif before:
            if before not in ids:
                raise StripeError.missing("object", before, "ending_before")
            newest_first = newest_first[: ids.index(before)]
            page = newest_first[-limit:]
        else:
            page = newest_first[:limit]
        expand = [p.removeprefix("data.") for p in forms.expand_paths(params) if p.startswith("data.")]
        return {
            "object": "list",
            "data": [self.render(o, expand) for o in page],
            "has_more": len(newest_first) > len(page),
            "url": url,
        }

    # events

    def emit(self, event_type: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record an event with a snapshot of `obj` now, and hand it to the webhook sink (in order)."""
        data: dict[str, Any] = {"object": self.render(obj)}
        if previous:
            data["previous_attributes"] = previous
        event = self.add({
            "id": self.new_id("evt_"),
            "object": "event",
            "api_version": self.config.api_version,
            "created": self.now(obj) if obj.get("object") != "test_helpers.test_clock" else obj["frozen_time"],
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
            "_clock": self.clock_id_of(obj) if obj.get("object") != "test_helpers.test_clock" else obj["id"],
        })
        if self._held is not None:
            self._held.append(self.render(event))
        else:
            self._sink(self.render(event))
        return event

    @contextlib.contextmanager
    def hold_events(self) -> Iterator[list[dict[str, Any]]]:
        """Buffer emitted events; the caller may reorder the list before they are sent on exit."""
        held: list[dict[str, Any]] = []
        self._held = held
        try:
            yield held
        finally:
            self._held = None
            for event in held:
                self._sink(event)

    def emit_changes(self, event_type: str, obj: dict[str, Any], before: dict[str, Any]) -> dict[str, Any] | None:
        """Emit `event_type` with `previous_attributes` if `obj` differs from the snapshot `before`."""
        previous = _diff(before, self.render(obj))
        if not previous:
            return None
        return self.emit(event_type, obj, previous)


def _public(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _public(v) for k, v in node.items() if not k.startswith("_")}
    if isinstance(node, list):
        return [_public(v) for v in node]
    return copy.copy(node)


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Old values of what changed; plain nested dicts (not Stripe objects or lists) recurse."""
    previous: dict[str, Any] = {}
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict) and "object" not in old:
            previous[key] = _diff(old, new)
        else:
            previous[key] = old
    return previous
