"""Each tenant's standing cached per process, with its revision token and the window it holds for."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from agentbilling.domain.plans import Catalog
from agentbilling.domain.subscription import Standing, standing
from agentbilling.storage.rows import subscription_from_row

CACHED_TENANTS = 10_000  # tenants whose standing is cached between admissions (and API keys whose tenant is)


class StandingCache:
    """Parsing the subscription row and deriving its standing cost more than the admission's SQL on
    SQLite, and change monthly; an entry serves only while the row's revision is the one it came
    from and `now` is inside the window `standing` gives (`since`, `until`: None unbounded)."""

    __slots__ = ("_catalog", "_billing_enabled", "_from_db", "_standings", "_key_tenants")

    def __init__(self, catalog: Catalog, billing_enabled: bool, from_db: Callable[[Any], datetime | None]) -> None:
        self._catalog = catalog
        self._billing_enabled = billing_enabled
        self._from_db = from_db
        self._standings: dict[str, tuple[int, Standing, datetime | None, datetime | None]] = {}
        # key hash -> its tenant (a key never moves; whether it is still live is asked every time)
        self._key_tenants: dict[str, str] = {}

    def get(self, tenant_id: str, now: datetime) -> tuple[int, Standing] | None:
        """The cached standing with the revision it was derived from, if it holds at `now`."""
        cached = self._standings.get(tenant_id)
        if cached is None:
            return None
        revision, st, since, until = cached
        if (since is None or since <= now) and (until is None or now < until):
            return revision, st
        return None

    def of_row(self, tenant_id: str, revision: int, row: Any, now: datetime) -> Standing:
        """The standing of a subscription row read at `revision`: the cached one if it is still that
        revision's and holds at `now`, else derived and cached."""
        cached = self.get(tenant_id, now)
        if cached is not None and cached[0] == revision:
            return cached[1]
        st = standing(subscription_from_row(tenant_id, row, self._catalog, self._from_db), now,
                      billing_enabled=self._billing_enabled)
        if len(self._standings) >= CACHED_TENANTS:
            self._standings.clear()
        self._standings[tenant_id] = (revision, st, st.since, st.until)
        return st

    def tenant_of_key(self, key_hash: str) -> str | None:
        return self._key_tenants.get(key_hash)

    def remember_key(self, key_hash: str, tenant_id: str) -> str:
        if len(self._key_tenants) >= CACHED_TENANTS:
            self._key_tenants.clear()
        self._key_tenants[key_hash] = tenant_id
        return tenant_id

    def forget_key(self, key_hash: str) -> None:
        self._key_tenants.pop(key_hash, None)
