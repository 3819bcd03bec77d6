"""The gate's SQL, each statement written once in `:name` style; PostgreSQL's get psycopg's `%(name)s`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from agentbilling.storage.rows import SESSION_COLUMNS, SUBSCRIPTION_COLUMNS

UNCAPPED = 2**62  # the cap a statement is given for a standing without one

COLS = ", ".join(SESSION_COLUMNS)


def for_postgres(statement: str) -> str:
    return re.sub(r":(\w+)", r"%(\1)s", statement)


@dataclass(frozen=True, slots=True)
class Statements:
    """The statements both backends run, in one backend's parameter style."""

    subscription: str
    insert_session: str
    session: str
    session_for_update: str
    update_session: str
    count_capped: str
    count: str
    key: str
    revision: str  # the revision alone: while the cached standing holds, all an admission needs
    key_revision: str
    used: str


_SHARED = dict(
    subscription=f"SELECT revision, {', '.join(SUBSCRIPTION_COLUMNS)} FROM subscriptions WHERE tenant_id = :t",
    insert_session=(
        f"INSERT INTO sessions (tenant_id, {COLS}) VALUES (:t, :id, :agent, :dir, :ao, :now, :now, NULL, NULL, :units)"
        " ON CONFLICT (tenant_id, id) DO NOTHING"
    ),
    session=f"SELECT {COLS} FROM sessions WHERE tenant_id = :t AND id = :id",
    update_session=(
        "UPDATE sessions SET last_activity_at = :last, answered_at = :answered, ended_at = :ended,"
        " billable_sessions = :units WHERE tenant_id = :t AND id = :id"
    ),
    count_capped=(
        "INSERT INTO usage_counters (tenant_id, period, billable_sessions) VALUES (:t, :c, 1)"
        " ON CONFLICT (tenant_id, period) DO UPDATE"
        " SET billable_sessions = usage_counters.billable_sessions + 1"
        " WHERE usage_counters.billable_sessions < :cap RETURNING billable_sessions"
    ),
    count=(
        "INSERT INTO usage_counters (tenant_id, period, billable_sessions) VALUES (:t, :c, :n)"
        " ON CONFLICT (tenant_id, period) DO UPDATE"
        " SET billable_sessions = usage_counters.billable_sessions + :n"
    ),
    key="SELECT tenant_id FROM api_keys WHERE key_hash = :h AND revoked_at IS NULL",
    revision="SELECT revision FROM subscriptions WHERE tenant_id = :t",
    key_revision=(
        "SELECT k.tenant_id, s.revision FROM api_keys k JOIN subscriptions s ON s.tenant_id = k.tenant_id"
        " WHERE k.key_hash = :h AND k.revoked_at IS NULL"
    ),
    used="SELECT billable_sessions FROM usage_counters WHERE tenant_id = :t AND period = :c",
)

SQLITE = Statements(**_SHARED, session_for_update=_SHARED["session"])
POSTGRES = Statements(**{name: for_postgres(s) for name, s in _SHARED.items()},
                      session_for_update=for_postgres(_SHARED["session"] + " FOR UPDATE"))

# -- SQLite: several admissions in one transaction, which holds the write lock since BEGIN IMMEDIATE

SQLITE_TAKE_COUNTER = (
    "INSERT INTO usage_counters (tenant_id, period, billable_sessions) VALUES (:t, :c, 0)"
    " ON CONFLICT (tenant_id, period) DO UPDATE SET billable_sessions = usage_counters.billable_sessions"
    " RETURNING billable_sessions"
)
SQLITE_SESSIONS_AMONG = (
    f"SELECT {COLS} FROM sessions WHERE tenant_id = :t AND id IN (SELECT value FROM json_each(:ids))"
)
SQLITE_RECORD_SESSION = (
    f"INSERT INTO sessions (tenant_id, {COLS}) VALUES (:t, :id, :agent, :dir, :ao, :now, :now, NULL, NULL, :units)"
)
SQLITE_SET_COUNT = "UPDATE usage_counters SET billable_sessions = :n WHERE tenant_id = :t AND period = :c"

# -- PostgreSQL

# One admission inside the transaction that holds the counter row and read the standing after it
# took it: count the first unit under the cap and, only if that counted, record the session;
# returns whether it was admitted, and marks the row checked under the standing's revision. It
# cannot tell a refusal from a replay (the id may have been admitted while it waited on the row,
# which its snapshot does not show): the caller asks. A race on the same id fails the insert,
# which undoes the count. (SQLite has no INSERT inside WITH.)
PG_ADMIT = for_postgres(
    "WITH c AS (INSERT INTO usage_counters (tenant_id, period, billable_sessions, checked_revision)"
    " SELECT CAST(:t AS VARCHAR), :c, 1, CAST(:rev AS bigint) WHERE :cap > 0"
    " AND NOT EXISTS (SELECT 1 FROM sessions WHERE tenant_id = :t AND id = :id)"
    " ON CONFLICT (tenant_id, period) DO UPDATE SET billable_sessions = usage_counters.billable_sessions + 1,"
    " checked_revision = CAST(:rev AS bigint)"
    " WHERE usage_counters.billable_sessions < :cap RETURNING 1),"
    f" s AS (INSERT INTO sessions (tenant_id, {COLS})"
    " SELECT :t, :id, :agent, :dir, :ao, :now, :now, NULL, NULL, :units FROM c RETURNING 1)"
    " SELECT EXISTS (SELECT 1 FROM s)"
)


def _admit_batch(*, key: bool) -> str:
    """The one statement (a transaction of its own) that admits new ids for a tenant whose standing
    is cached: only while the subscription is at the cached revision (and, with `key`, the key is
    live), and only while the counter row's `checked_revision`, read on its latest version after
    any wait, is that revision (a writer clears it: migration 0007's trigger). It counts all first
    units under the cap and records them all, or nothing (0): an id that exists fails the insert,
    which undoes the count. It looks rows up only by unique keys, so a plan made once stays right
    as the tables grow (docs/decisions/0101)."""
    guard = ("k AS (SELECT 1 FROM api_keys WHERE key_hash = :h AND revoked_at IS NULL AND tenant_id = :t), "
             if key else "")
    return for_postgres(
        f"WITH {guard}r AS (SELECT 1 FROM subscriptions WHERE tenant_id = :t AND revision = :rev),"
        " c AS (INSERT INTO usage_counters (tenant_id, period, billable_sessions, checked_revision)"
        f" SELECT CAST(:t AS VARCHAR), :c, :n, CAST(:rev AS bigint) FROM {'k, r' if key else 'r'} WHERE :n <= :cap"
        " ON CONFLICT (tenant_id, period) DO UPDATE SET billable_sessions = usage_counters.billable_sessions + :n"
        " WHERE usage_counters.billable_sessions <= :cap - :n"
        " AND usage_counters.checked_revision = CAST(:rev AS bigint) RETURNING 1),"
        f" s AS (INSERT INTO sessions (tenant_id, {COLS})"
        " SELECT :t, u.id, u.agent, u.dir, :ao, :now, :now, NULL, NULL, 1"
        " FROM c, unnest(CAST(:ids AS text[]), CAST(:agents AS text[]), CAST(:dirs AS text[])) AS u(id, agent, dir)"
        " RETURNING 1)"
        " SELECT count(*) FROM s"
    )


PG_ADMIT_BATCH = _admit_batch(key=False)
PG_ADMIT_BATCH_FOR_KEY = _admit_batch(key=True)

# Several admissions in one transaction, pipelined: make sure the counter row exists, lock it with
# FOR UPDATE (no new row version, unlike a no-op upsert), then read the ids that exist in a
# statement of its own, whose snapshot follows the lock; then the sessions (one INSERT from arrays)
# and the count (:n NULL: unchanged) in one statement.
PG_ENSURE_COUNTER = for_postgres(
    "INSERT INTO usage_counters (tenant_id, period, billable_sessions) VALUES (:t, :c, 0)"
    " ON CONFLICT (tenant_id, period) DO NOTHING"
)
PG_LOCK_COUNTER = for_postgres(
    "SELECT billable_sessions FROM usage_counters WHERE tenant_id = :t AND period = :c FOR UPDATE"
)
PG_SESSIONS_AMONG = for_postgres(f"SELECT {COLS} FROM sessions WHERE tenant_id = :t AND id = ANY(:ids)")
PG_RECORD_SESSIONS_AND_COUNT = for_postgres(
    f"WITH i AS (INSERT INTO sessions (tenant_id, {COLS})"
    " SELECT :t, u.id, u.agent, u.dir, :ao, :now, :now, NULL, NULL, u.units"
    " FROM unnest(CAST(:ids AS text[]), CAST(:agents AS text[]), CAST(:dirs AS text[]),"
    " CAST(:units AS int[])) AS u(id, agent, dir, units) RETURNING 1)"
    " UPDATE usage_counters SET billable_sessions = COALESCE(CAST(:n AS bigint), billable_sessions),"
    " checked_revision = CAST(:rev AS bigint)"
    " WHERE tenant_id = :t AND period = :c"
)
