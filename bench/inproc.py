"""Benchmark 1: in-process admissions per second, agentbilling against a plain driver loop.

Contenders, each on a fresh database copied from the same migrated template (tenant `bench` on the
enterprise plan, limit 10^9), one thread, back to back:

* raw      a plain sqlite3 / psycopg loop doing the writes an admission needs, in one transaction:
           insert the session row, then `UPDATE usage_counters SET n = n + 1 WHERE ... AND n < cap`
           (SQLite: `BEGIN IMMEDIATE` ... `COMMIT`; PostgreSQL: implicit BEGIN ... commit()).
* service  `Billing.open_session(tenant, id, agent_id=..., direction="inbound")` (what it really does:
           read the subscription, derive the standing, insert the session, capped counter upsert).

Same durability on both: SQLite WAL with synchronous NORMAL (the service's default) and, unless
--quick, FULL; PostgreSQL as the server is configured (synchronous_commit on, fsync on) and, unless
--quick, with synchronous_commit=off on both sides (AGENTBILLING_PG_SYNCHRONOUS_COMMIT=off).
Each round runs raw, service, raw; the ratio of a round is service / mean(raw, raw).
"""

from __future__ import annotations

import sqlite3
import sys
from datetime import UTC, datetime
from typing import Any

from bench import common as c

CAP = 2**62


# -- the raw loops ------------------------------------------------------------------------------

def _ts(now: datetime) -> str:
    return (f"{now.year:04d}-{now.month:02d}-{now.day:02d} "
            f"{now.hour:02d}:{now.minute:02d}:{now.second:02d}.{now.microsecond:06d}")


INSERT_Q = ("INSERT INTO sessions (tenant_id, id, agent_id, direction, answered_only, started_at,"
            " last_activity_at, answered_at, ended_at, billable_sessions)"
            " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, NULL, NULL, 1)")
UPDATE_Q = ("UPDATE usage_counters SET billable_sessions = billable_sessions + 1"
            " WHERE tenant_id = {p} AND {key} = {p} AND billable_sessions < {p}")


def counter_key(columns: dict[str, str]) -> tuple[str, bool]:
    """The counter's key column besides tenant_id (the schema names it), and whether it is a timestamp."""
    keys = [name for name in columns if name not in ("tenant_id", "billable_sessions", "checked_revision")]
    if len(keys) != 1:
        raise SystemExit(f"usage_counters has unexpected columns {list(columns)}; update bench/inproc.py")
    kind = columns[keys[0]].lower()
    return keys[0], ("time" in kind or "date" in kind)


class RawSqlite:
    def __init__(self, url: str, synchronous: str) -> None:
        self.conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
        for pragma in ("busy_timeout = 10000", "journal_mode = WAL", f"synchronous = {synchronous}",
                       "foreign_keys = ON"):
            self.conn.execute(f"PRAGMA {pragma}")
        cols = {row[1]: row[2] for row in self.conn.execute("PRAGMA table_info(usage_counters)")}
        key, is_time = counter_key(cols)
        self.counter = "2000-01-01 00:00:00.000000" if is_time else "bench"
        self.conn.execute(f"INSERT INTO usage_counters (tenant_id, {key}, billable_sessions) VALUES (?, ?, 0)",
                          (c.TENANT, self.counter))
        self.cur = self.conn.cursor()
        self.insert = INSERT_Q.format(p="?")
        self.update = UPDATE_Q.format(p="?", key=key)

    def admit(self, sid: str) -> None:
        cur = self.cur
        at = _ts(datetime.now(UTC))
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute(self.insert, (c.TENANT, sid, c.AGENT, "inbound", 0, at, at))
            cur.execute(self.update, (c.TENANT, self.counter, CAP))
            if cur.rowcount != 1:
                raise RuntimeError("refused")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class RawPostgres:
    def __init__(self, url: str, synchronous: str) -> None:
        import psycopg

        options = {"options": "-c synchronous_commit=off"} if synchronous == "off" else {}
        self.conn = psycopg.connect(c.pg_conninfo(url), **options)
        cols = dict(self.conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'usage_counters'"
            " AND table_schema = current_schema()").fetchall())
        key, is_time = counter_key(cols)
        self.counter: Any = datetime(2000, 1, 1, tzinfo=UTC) if is_time else "bench"
        self.conn.execute(f"INSERT INTO usage_counters (tenant_id, {key}, billable_sessions) VALUES (%s, %s, 0)",
                          (c.TENANT, self.counter))
        self.conn.commit()
        self.cur = self.conn.cursor()
        self.insert = INSERT_Q.format(p="%s")
        self.update = UPDATE_Q.format(p="%s", key=key)

    def admit(self, sid: str) -> None:
        cur = self.cur
        now = datetime.now(UTC)
        try:
            cur.execute(self.insert, (c.TENANT, sid, c.AGENT, "inbound", False, now, now))
            cur.execute(self.update, (c.TENANT, self.counter, CAP))
            if cur.rowcount != 1:
                raise RuntimeError("refused")
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


class Service:
    def __init__(self, url: str, synchronous: str) -> None:
        self.billing = c.connect_service(url, synchronous)

    def admit(self, sid: str) -> None:
        result = self.billing.open_session(c.TENANT, sid, agent_id=c.AGENT, direction="inbound")
        if result.session is None or result.replay:
            raise RuntimeError(f"not admitted: {result}")

    def close(self) -> None:
        self.billing.close()


# -- one configuration --------------------------------------------------------------------------

def run_one(dbs: c.Databases, kind: str, *, seconds: float, warmup: float, min_count: int) -> c.Sample:
    url = dbs.fresh(kind)
    try:
        if kind == "raw":
            runner: Any = (RawSqlite(url, dbs.synchronous) if dbs.backend == "sqlite"
                           else RawPostgres(url, dbs.synchronous))
        else:
            runner = Service(url, dbs.synchronous)
        try:
            lat, wall = c.timed_loop(runner.admit, seconds=seconds, warmup=warmup, prefix=f"{kind}-{c.run_id()}-",
                                     min_count=min_count, max_seconds=seconds * 4)
        finally:
            runner.close()
        return c.sample_from(kind, lat, wall)
    finally:
        dbs.drop(url)


def bench_config(backend: str, synchronous: str, args: Any, *, rounds: int, seconds: float,
                 warmup: float, min_count: int) -> dict[str, Any]:
    label = (f"{backend} (WAL, synchronous={synchronous})" if backend == "sqlite"
             else "postgres (synchronous_commit=off)" if synchronous == "off" else "postgres")
    c.banner(f"In-process admissions: {label}: {rounds} rounds of raw / service / raw, {seconds:g} s each")
    res = c.Interleaved()
    with c.Databases(backend, pg_admin_url=args.pg_url, synchronous=synchronous) as dbs:
        for r in range(rounds):
            b1 = run_one(dbs, "raw", seconds=seconds, warmup=warmup, min_count=min_count)
            cand = run_one(dbs, "service", seconds=seconds, warmup=warmup, min_count=min_count)
            b2 = run_one(dbs, "raw", seconds=seconds, warmup=warmup, min_count=min_count)
            res.baseline += [b1, b2]
            res.candidate.append(cand)
            ratio = res.ratios()[-1]
            print(f"  round {r + 1}: raw {b1.rate:,.0f}/s  service {cand.rate:,.0f}/s  raw {b2.rate:,.0f}/s"
                  f"  -> ratio {ratio:.3f}   (service p50 {cand.p50_ms:.3f} p99 {cand.p99_ms:.3f}"
                  f" p999 {cand.p999_ms:.3f} ms)", flush=True)

    rows = []
    for i, cand in enumerate(res.candidate):
        for s in (res.baseline[2 * i], cand, res.baseline[2 * i + 1]):
            rows.append([f"{i + 1}", s.label, s.count, s.rate, s.p50_ms, s.p99_ms, s.p999_ms, s.max_ms])
    print()
    print(c.table(["round", "contender", "admissions", "per s", "p50 ms", "p99 ms", "p999 ms", "max ms"], rows))
    mb, mc = res.medians("baseline"), res.medians("candidate")
    ratios = res.ratios()
    ratio = c.median(ratios)
    print()
    print(c.table(
        ["median over rounds", "per s", "p50 ms", "p99 ms", "p999 ms", "worst p999 ms"],
        [["raw driver loop", mb["per_second"], mb["p50_ms"], mb["p99_ms"], mb["p999_ms"], mb["worst_p999_ms"]],
         ["agentbilling open_session", mc["per_second"], mc["p50_ms"], mc["p99_ms"], mc["p999_ms"],
          mc["worst_p999_ms"]]],
        title=f"Summary: {label}"))
    ok_ratio, ok_p999 = ratio >= 0.70, mc["p999_ms"] < 2.0
    print(f"\n  service / raw throughput: median {ratio:.3f} (rounds: {', '.join(f'{x:.3f}' for x in ratios)})"
          f"   target >= 0.70: {c.verdict(ok_ratio)}")
    print(f"  service p999: median {mc['p999_ms']:.3f} ms (worst round {mc['worst_p999_ms']:.3f} ms)"
          f"   target < 2 ms: {c.verdict(ok_p999)}", flush=True)
    return {
        "backend": backend, "synchronous": synchronous, "label": label,
        "rounds": [{"raw_before": res.baseline[2 * i].as_json(), "service": s.as_json(),
                    "raw_after": res.baseline[2 * i + 1].as_json(), "ratio": round(ratios[i], 4)}
                   for i, s in enumerate(res.candidate)],
        "median": {"raw": mb, "service": mc, "ratio": ratio},
        "targets": {"ratio_ge_0.70": ok_ratio, "service_p999_lt_2ms": ok_p999},
    }


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=None, help="length of each measured run")
    p.add_argument("--full-sync", choices=("auto", "yes", "no"), default="auto",
                   help="also SQLite synchronous=FULL (auto: unless --quick)")
    p.add_argument("--pg-commit-off", choices=("auto", "yes", "no"), default="auto",
                   help="also PostgreSQL with synchronous_commit=off on both sides (auto: unless --quick)")
    args = c.parse(p, argv)
    started = c.environment()
    rounds = args.rounds or (3 if args.quick else 5)
    seconds = args.seconds or (1.0 if args.quick else 2.0)
    warmup = 0.2 if args.quick else 0.4
    min_count = 1000 if args.quick else 3000
    configs = []
    for backend in c.backends(args):
        if backend == "sqlite":
            configs.append(("sqlite", "NORMAL"))
            if args.full_sync == "yes" or (args.full_sync == "auto" and not args.quick):
                configs.append(("sqlite", "FULL"))
        else:
            configs.append(("postgres", "server"))
            if args.pg_commit_off == "yes" or (args.pg_commit_off == "auto" and not args.quick):
                configs.append(("postgres", "off"))
    results = [bench_config(b, s, args, rounds=rounds, seconds=seconds, warmup=warmup, min_count=min_count)
               for b, s in configs]

    c.banner("In-process admissions: overall")
    print(c.table(
        ["configuration", "raw /s", "service /s", "ratio", ">=0.70", "svc p50", "svc p99", "svc p999", "<2ms",
         "raw p999"],
        [[r["label"], r["median"]["raw"]["per_second"], r["median"]["service"]["per_second"], r["median"]["ratio"],
          c.verdict(r["targets"]["ratio_ge_0.70"]), r["median"]["service"]["p50_ms"],
          r["median"]["service"]["p99_ms"], r["median"]["service"]["p999_ms"],
          c.verdict(r["targets"]["service_p999_lt_2ms"]), r["median"]["raw"]["p999_ms"]] for r in results]))
    return c.finish("inproc", started, args, rounds, seconds, results, min_admissions_per_run=min_count)


if __name__ == "__main__":
    sys.exit(main())
