"""Webhooks out: every notice and every change of a subscription, signed per Standard Webhooks and
delivered to each endpoint the operator registered (`emit`, then `WebhooksOut`); README.md, "Webhooks out"."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import and_, case, delete, func, insert, or_, select, update
from standardwebhooks.webhooks import Webhook

from agentbilling.delivery import claims, destinations
from agentbilling.domain.errors import InvalidInput, NotFound
from agentbilling.domain.subscription import Subscription
from agentbilling.storage.db import Database
from agentbilling.storage.tables import webhook_deliveries, webhook_endpoints, webhook_events
from agentbilling.storage.types import UTCDateTime
from agentbilling.usecases.cursors import newest_first
from agentbilling.usecases.results import Backlog

log = logging.getLogger(__name__)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
# The schedule Standard Webhooks recommends, after the first try; then the delivery has failed.
RETRY_AFTER = [timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
               timedelta(hours=5), timedelta(hours=10), timedelta(hours=10)]
DISABLE_AFTER = timedelta(days=5)  # of failing without one success
CLAIM = timedelta(minutes=2)
TIMEOUT = 10.0  # seconds for one delivery


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    url: str
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None
    secret: str | None = None  # only when it is created


@dataclass(frozen=True, slots=True)
class Delivery:
    event_id: str
    type: str
    tenant_id: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON")


def _event_id() -> str:
    return f"evt_{time.time_ns():016x}{secrets.token_hex(3)}"  # in the order made, within a process


def emit(conn: Any, tenant_id: str, type_: str, data: dict[str, Any], now: datetime) -> str:
    """Record an event and a delivery of it to every enabled endpoint, in the caller's transaction."""
    event_id = _event_id()
    body = json.dumps({"type": type_, "timestamp": _iso(now), "data": {"tenant_id": tenant_id, **data}},
                      default=_iso, separators=(",", ":"))
    conn.execute(insert(webhook_events).values(id=event_id, tenant_id=tenant_id, type=type_, payload=body,
                                               created_at=now))
    endpoints = conn.execute(select(webhook_endpoints.c.id).where(webhook_endpoints.c.disabled_at.is_(None))).scalars()
    rows = [{"endpoint_id": e, "event_id": event_id, "status": PENDING, "created_at": now} for e in endpoints]
    if rows:
        conn.execute(insert(webhook_deliveries), rows)
    return event_id


def subscription_data(sub: Subscription) -> dict[str, Any]:
    """A subscription as the platform hears of it in `subscription.updated`."""
    return {
        "status": sub.status.value, "plan_id": sub.plan.id if sub.plan else None,
        "period_anchor": sub.anchor, "session_limit": sub.custom_limit,
        "pending_change": {"plan_id": sub.pending.plan.id, "effective_at": sub.pending.effective_at}
        if sub.pending else None,
        "cancel_at": sub.cancel_at, "payment_failed_at": sub.payment_failed_at, "grace_ends_at": sub.grace_ends_at,
        "ended_at": sub.ended_at,
    }


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(row.id, row.url, row.created_at, row.disabled_at, row.disabled_reason)


class WebhooksOut:
    """The operator's endpoints, and the deliveries workers claim and post.

    A 2xx is delivered; a 410 disables the endpoint at once; any other answer, or none, is tried again
    after `RETRY_AFTER`, and an endpoint failing for `DISABLE_AFTER` is disabled. A failing endpoint costs
    one try per pass, whatever it has waiting, so it never holds up the others."""
    def __init__(self, db: Database, client: httpx.Client | None = None, *, claim: timedelta = CLAIM,
                 allow_private: bool = False) -> None:
        self.db = db
        self.allow_private = allow_private  # AGENTBILLING_WEBHOOK_ALLOW_PRIVATE (delivery/destinations.py)
        self.claim_for = claim
        self.client = client or httpx.Client(timeout=TIMEOUT, follow_redirects=False)

    def close(self) -> None:
        self.client.close()

    # -- the operator's endpoints ------------------------------------------------------------

    def create_endpoint(self, url: object, now: datetime) -> Endpoint:
        if not isinstance(url, str) or len(url) > 2000:
            raise InvalidInput("url must be an http or https URL of at most 2,000 characters.")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput("url must be an http or https URL, e.g. https://platform.example/hooks/billing.")
        if not self.allow_private:
            destinations.check_url(url)
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        endpoint_id = "we_" + secrets.token_hex(10)
        with self.db.write() as conn:
            conn.execute(insert(webhook_endpoints).values(id=endpoint_id, url=url, secret=secret, created_at=now))
        return Endpoint(endpoint_id, url, now, None, None, secret)

    def endpoints(self) -> list[Endpoint]:
        with self.db.read() as conn:
            rows = conn.execute(select(webhook_endpoints).order_by(webhook_endpoints.c.created_at)).all()
        return [_endpoint(r) for r in rows]

    def endpoint(self, endpoint_id: str) -> Endpoint:
        with self.db.read() as conn:
            row = conn.execute(select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)).first()
        if row is None:
            raise NotFound(f"No webhook endpoint {endpoint_id!r}.")
        return _endpoint(row)

    def delete_endpoint(self, endpoint_id: str) -> None:
        self.endpoint(endpoint_id)
        with self.db.write() as conn:
            conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id))
            conn.execute(delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))

    def deliveries(self, endpoint_id: str, cursor: str | None, limit: int) -> tuple[list[Delivery], str | None]:
        """The endpoint's delivery log, newest first."""
        self.endpoint(endpoint_id)
        d, e = webhook_deliveries.c, webhook_events.c
        query = (select(d.event_id, e.type, e.tenant_id, d.status, d.attempts, d.last_status_code, d.last_error,
                        d.next_at, d.delivered_at, d.created_at)
                 .join(webhook_events, e.id == d.event_id).where(d.endpoint_id == endpoint_id))
        return newest_first(self.db, query, d.created_at, d.event_id, cursor, limit, lambda r: Delivery(*r),
                            lambda x: (x.created_at, x.event_id))

    # -- delivery ------------------------------------------------------------------------------

    def _due(self, wall: datetime) -> Any:
        d = webhook_deliveries.c
        return and_(d.status == PENDING, or_(d.next_at.is_(None), d.next_at <= wall),
                    or_(d.claimed_until.is_(None), d.claimed_until < wall))

    def claim(self, wall: datetime, batch: int = 50) -> list[tuple[str, str]]:
        """Up to `batch` due deliveries (endpoint id, event id), oldest first, for this worker alone
        until `claim_for` has passed (delivery/claims.py)."""
        d = webhook_deliveries.c
        keys = claims.claim(self.db, webhook_deliveries, [d.endpoint_id, d.event_id], self._due(wall),
                            [d.created_at, d.event_id], d.claimed_until, wall + self.claim_for, batch)
        return [(endpoint_id, event_id) for endpoint_id, event_id in keys]

    def deliver(self, wall: Callable[[], datetime], batch: int = 50) -> int:
        """Post the due deliveries, batch after batch; how many were delivered."""
        delivered = 0
        down: set[str] = set()  # endpoints that failed in this pass: tried once, not once per event
        while claimed := self.claim(wall(), batch):
            progress = False
            for endpoint_id, event_id in claimed:
                if endpoint_id in down:
                    self._release(endpoint_id, event_id, wall())
                    continue
                progress = True
                ok = self._post(endpoint_id, event_id, wall)
                delivered += ok
                if not ok:
                    down.add(endpoint_id)
            if not progress:
                break
        return delivered

    def _release(self, endpoint_id: str, event_id: str, wall: datetime) -> None:
        d = webhook_deliveries.c
        with self.db.write() as conn:
            # Left for a later pass: due again when the one that failed is retried.
            retry_at = conn.execute(select(d.next_at).where(d.endpoint_id == endpoint_id, d.status == PENDING,
                                                            d.next_at.is_not(None)).order_by(d.next_at.desc())
                                    .limit(1)).scalar() or wall + RETRY_AFTER[0]
            conn.execute(update(webhook_deliveries).where(d.endpoint_id == endpoint_id, d.event_id == event_id)
                         .values(claimed_until=None, next_at=retry_at))

    def _post(self, endpoint_id: str, event_id: str, wall: Callable[[], datetime]) -> int:
        with self.db.read() as conn:
            ep = conn.execute(select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)).first()
            body = conn.execute(select(webhook_events.c.payload).where(webhook_events.c.id == event_id)).scalar()
        if ep is None or body is None:
            return 0
        sent_at = wall()
        headers = {"content-type": "application/json", "webhook-id": event_id,
                   "webhook-timestamp": str(int(sent_at.timestamp())),
                   "webhook-signature": Webhook(ep.secret).sign(event_id, sent_at, body),
                   "user-agent": "agentbilling-webhooks"}
        code: int | None = None
        error: str | None = None
        try:
            code = self._send(ep.url, body.encode(), headers)
        except destinations.DestinationRefused as exc:
            error = exc.detail
        except OSError:  # the name does not resolve (the log says no more: it is no port scanner)
            error = "The endpoint's host name does not resolve."
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        if code is not None and 200 <= code < 300:
            self._record(endpoint_id, event_id, status=DELIVERED, code=code, delivered_at=wall())
            return 1
        self._failed(endpoint_id, event_id, code, error or f"HTTP {code}", wall())
        return 0

    def _send(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POSTs to the endpoint; unless private destinations are allowed, to the address checked just
        now (the name is not resolved a second time, so it cannot be rebound to another address)."""
        if self.allow_private:
            return self.client.post(url, content=body, headers=headers).status_code
        ip = destinations.pinned_address(url)
        parts = urlsplit(url)
        host = parts.hostname or ""
        address = f"[{ip}]" if ip.version == 6 else str(ip)
        pinned = parts._replace(netloc=address + (f":{parts.port}" if parts.port else "")).geturl()
        host_header = parts.netloc.rpartition("@")[2]
        return self.client.post(pinned, content=body, headers={**headers, "host": host_header},
                                extensions={"sni_hostname": host}).status_code

    def _record(self, endpoint_id: str, event_id: str, *, status: str, code: int | None,
                delivered_at: datetime | None = None, error: str | None = None, next_at: datetime | None = None,
                attempts: int | None = None) -> None:
        d = webhook_deliveries.c
        with self.db.write() as conn:
            values: dict[str, Any] = {"status": status, "last_status_code": code, "last_error": error,
                                      "claimed_until": None, "next_at": next_at, "delivered_at": delivered_at,
                                      "attempts": attempts if attempts is not None else d.attempts + 1}
            conn.execute(update(webhook_deliveries).where(d.endpoint_id == endpoint_id, d.event_id == event_id)
                         .values(**values))
            if status == DELIVERED:
                conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
                             .values(failing_since=None))

    def _failed(self, endpoint_id: str, event_id: str, code: int | None, error: str, wall: datetime) -> None:
        d, ep = webhook_deliveries.c, webhook_endpoints.c
        with self.db.write() as conn:
            attempts = (conn.execute(select(d.attempts).where(d.endpoint_id == endpoint_id, d.event_id == event_id))
                        .scalar() or 0) + 1
            since = conn.execute(select(ep.failing_since).where(ep.id == endpoint_id)).scalar() or wall
            gone = code == 410
            disable = gone or wall - since >= DISABLE_AFTER
            gave_up = disable or attempts > len(RETRY_AFTER)
            conn.execute(update(webhook_deliveries).where(d.endpoint_id == endpoint_id, d.event_id == event_id).values(
                status=FAILED if gave_up else PENDING, attempts=attempts, last_status_code=code, last_error=error,
                claimed_until=None, next_at=None if gave_up else wall + RETRY_AFTER[attempts - 1]))
            conn.execute(update(webhook_endpoints).where(ep.id == endpoint_id).values(failing_since=since))
            if disable:
                reason = "410 Gone" if gone else f"failing since {since.isoformat()}"
                conn.execute(update(webhook_endpoints).where(ep.id == endpoint_id)
                             .values(disabled_at=wall, disabled_reason=reason))
                conn.execute(update(webhook_deliveries).where(d.endpoint_id == endpoint_id, d.status == PENDING)
                             .values(status=FAILED, last_error=f"endpoint disabled: {reason}", next_at=None,
                                     claimed_until=None))
        log.warning("webhook %s to endpoint %s failed (attempt %d): %s%s", event_id, endpoint_id, attempts, error,
                    "; endpoint disabled" if disable else "")

    def backlog(self, wall: datetime) -> tuple[int, Backlog]:
        """Deliveries due now and not made, and since when they wait (see Backlog)."""
        d = webhook_deliveries.c
        due = and_(d.status == PENDING, or_(d.next_at.is_(None), d.next_at <= wall))
        with self.db.read() as conn:
            count, retry, first = conn.execute(select(
                func.count(), func.min(d.next_at, type_=UTCDateTime()),
                func.min(case((d.next_at.is_(None), d.created_at)), type_=UTCDateTime())).where(due)).one()
        return count or 0, Backlog(retry, first)
