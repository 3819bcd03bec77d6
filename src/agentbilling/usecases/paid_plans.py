"""What every story of a paid subscription works with: the database, the catalog, the provider and
the way it bills, the book (segments, credit, what is owed) and the grace after a failed payment."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from agentbilling.domain.plans import Catalog
from agentbilling.payments.provider import PaymentProvider
from agentbilling.storage.db import Database
from agentbilling.storage.repositories.ledger import Book

if TYPE_CHECKING:
    from agentbilling.usecases.billing_modes import BillingMode


class TenantLocks:
    """SQLite: one provider delivery per tenant at a time in this process."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def hold(self, tenant_id: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(tenant_id, threading.Lock())
        with lock:
            yield


@dataclass(frozen=True)
class PaidPlans:
    """The paid plans' stories' dependencies, built once (usecases/lifecycle.py) and passed to each."""

    db: Database
    catalog: Catalog
    provider: PaymentProvider
    mode: BillingMode  # who renews, invoices and charges: agentbilling (WeBill) or the provider (ProviderBills)
    grace: timedelta
    book: Book
    tenant_locks: TenantLocks = field(default_factory=TenantLocks)
