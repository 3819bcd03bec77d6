"""Benchmark 3: admission latency with 1,000,000 stored sessions against 1,000 stored sessions.

Two fresh databases per backend, each with tenant `bench` on the enterprise plan (limit 10^9); the
sessions table is pre-filled for that tenant with bulk SQL (SQLite: INSERT ... SELECT from a recursive
CTE; PostgreSQL: generate_series, then VACUUM ANALYZE and CHECKPOINT). Session ids are 24 random hex
characters, in the pre-fill and in the measured admissions alike, so new rows land at random places in
the primary-key index, as real ids (UUIDs and the like) would. One `Billing` per database stays open
(a warm service); each round times `open_session` back to back on small, large, small; the ratio of a
round is the large database's median latency over the mean of the small one's two medians. The rows a run
admitted are deleted after it (outside the timing), so each database keeps its size.
"""

from __future__ import annotations

import secrets
import sqlite3
import sys
import time
from datetime import UTC, datetime
from typing import Any

from bench import common as c
from bench.inproc import _ts as sqlite_text

SESSION_COLS = ("tenant_id, id, agent_id, direction, answered_only, started_at, last_activity_at, answered_at,"
                " ended_at, billable_sessions")

SQLITE_FILL = f"""
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count),
r(i, ts) AS (SELECT i, strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (5000000 - i * 5000000 / :count) || ' seconds')
                       || '000' FROM n)
INSERT INTO sessions ({SESSION_COLS})
SELECT :tenant, lower(hex(randomblob(12))), 'agent-' || (i % 50),
       CASE WHEN i % 4 = 0 THEN 'outbound' ELSE 'inbound' END, 0, ts, ts, NULL,
       CASE WHEN i % 3 = 0 THEN NULL ELSE ts END, 1
FROM r
"""

PG_FILL = f"""
INSERT INTO sessions ({SESSION_COLS})
SELECT %(tenant)s, substr(md5(random()::text || i::text), 1, 24), 'agent-' || (i %% 50),
       CASE WHEN i %% 4 = 0 THEN 'outbound' ELSE 'inbound' END, false,
       now() - (5000000 - i::bigint * 5000000 / %(count)s) * interval '1 second',
       now() - (5000000 - i::bigint * 5000000 / %(count)s) * interval '1 second',
       NULL,
       CASE WHEN i %% 3 = 0 THEN NULL
            ELSE now() - (5000000 - i::bigint * 5000000 / %(count)s) * interval '1 second' END,
       1
FROM generate_series(1, %(count)s) AS i
"""


def prefill(url: str, backend: str, count: int) -> float:
    """Bulk-insert `count` sessions for the tenant; returns the seconds it took."""
    t0 = time.perf_counter()
    if backend == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA cache_size = -400000")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(SQLITE_FILL, {"count": count, "tenant": c.TENANT})
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    else:
        import psycopg

        with psycopg.connect(c.pg_conninfo(url), autocommit=True) as conn:
            conn.execute(PG_FILL, {"count": count, "tenant": c.TENANT})
            conn.execute("VACUUM ANALYZE sessions")
            conn.execute("CHECKPOINT")
    return time.perf_counter() - t0


def stored(url: str, backend: str) -> tuple[int, int]:
    """(sessions of the tenant, database size in bytes)."""
    if backend == "sqlite":
        path = url.removeprefix("sqlite:///")
        conn = sqlite3.connect(path)
        n = conn.execute("SELECT count(*) FROM sessions WHERE tenant_id = ?", (c.TENANT,)).fetchone()[0]
        size = conn.execute("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()").fetchone()[0]
        conn.close()
        return n, size
    import psycopg

    with psycopg.connect(c.pg_conninfo(url)) as conn:
        n = conn.execute("SELECT count(*) FROM sessions WHERE tenant_id = %s", (c.TENANT,)).fetchone()[0]
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        return n, size


def purge(url: str, backend: str, since: datetime) -> int:
    """Delete the sessions a measured run admitted (started at or after `since`), so that each
    database keeps the number of sessions it was filled with; returns how many."""
    if backend == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 10000")
        n = conn.execute("DELETE FROM sessions WHERE tenant_id = ? AND started_at >= ?",
                         (c.TENANT, sqlite_text(since))).rowcount
        conn.close()
        return n
    import psycopg

    with psycopg.connect(c.pg_conninfo(url), autocommit=True) as conn:
        return conn.execute("DELETE FROM sessions WHERE tenant_id = %s AND started_at >= %s",
                            (c.TENANT, since)).rowcount


def random_id(prefix: str, i: int) -> str:
    return secrets.token_hex(12)


def bench_backend(backend: str, args: Any, *, rounds: int, seconds: float, warmup: float, min_count: int,
                  small_n: int, large_n: int) -> dict[str, Any]:
    label = f"{backend} (WAL, synchronous=NORMAL)" if backend == "sqlite" else "postgres"
    c.banner(f"Admission latency at scale: {label}: {large_n:,} vs {small_n:,} stored sessions,"
             f" {rounds} rounds of small / large / small, {seconds:g} s each")
    with c.Databases(backend, pg_admin_url=args.pg_url) as dbs:
        urls = {"small": dbs.fresh("small"), "large": dbs.fresh("large")}
        fill = {}
        for name, n in (("small", small_n), ("large", large_n)):
            fill[name] = prefill(urls[name], backend, n)
            count, size = stored(urls[name], backend)
            print(f"  pre-filled {name}: {count:,} sessions in {fill[name]:.1f} s; database {size / 2**20:,.1f} MiB",
                  flush=True)
        services = {name: c.connect_service(url) for name, url in urls.items()}

        def op_for(name: str):
            billing = services[name]

            def admit(sid: str) -> None:
                result = billing.open_session(c.TENANT, sid, agent_id=c.AGENT, direction="inbound")
                if result.session is None or result.replay:
                    raise RuntimeError(f"not admitted: {result}")
            return admit

        res = c.Interleaved()
        try:
            for r in range(rounds):
                got = []
                for name in ("small", "large", "small"):
                    since = datetime.now(UTC)
                    lat, wall = c.timed_loop(op_for(name), seconds=seconds, warmup=warmup, prefix="", ids=random_id,
                                             min_count=min_count, max_seconds=seconds * 4)
                    got.append(c.sample_from(name, lat, wall))
                    purge(urls[name], backend, since)
                res.baseline += [got[0], got[2]]
                res.candidate.append(got[1])
                ratio = got[1].p50_ms / ((got[0].p50_ms + got[2].p50_ms) / 2)
                print(f"  round {r + 1}: median small {got[0].p50_ms:.3f} ms  large {got[1].p50_ms:.3f} ms"
                      f"  small {got[2].p50_ms:.3f} ms  -> ratio {ratio:.3f}", flush=True)
        finally:
            for billing in services.values():
                billing.close()
        final = {name: stored(url, backend)[0] for name, url in urls.items()}

    ratios = [res.candidate[i].p50_ms / ((res.baseline[2 * i].p50_ms + res.baseline[2 * i + 1].p50_ms) / 2)
              for i in range(len(res.candidate))]
    ms, ml = res.medians("baseline"), res.medians("candidate")
    ratio = c.median(ratios)
    rate_ratio = ml["per_second"] / ms["per_second"]
    print()
    print(c.table(["median over rounds", "stored", "admissions/s", "p50 ms", "p99 ms", "p999 ms"],
                  [[f"{small_n:,} sessions", final["small"], ms["per_second"], ms["p50_ms"], ms["p99_ms"],
                    ms["p999_ms"]],
                   [f"{large_n:,} sessions", final["large"], ml["per_second"], ml["p50_ms"], ml["p99_ms"],
                    ml["p999_ms"]]],
                  title=f"Summary: {label}"))
    ok = ratio <= 1.2
    print(f"\n  median latency, large / small: {ratio:.3f} (rounds: {', '.join(f'{x:.3f}' for x in ratios)})"
          f"   target <= 1.2: {c.verdict(ok)}")
    print(f"  p99 large / small: {ml['p99_ms'] / ms['p99_ms']:.3f};  throughput large / small: {rate_ratio:.3f}",
          flush=True)
    return {"backend": backend, "label": label, "small_sessions": small_n, "large_sessions": large_n,
            "prefill_seconds": fill, "stored_at_end": final,
            "rounds": [{"small_before": res.baseline[2 * i].as_json(), "large": s.as_json(),
                        "small_after": res.baseline[2 * i + 1].as_json(), "ratio_p50": round(ratios[i], 4)}
                       for i, s in enumerate(res.candidate)],
            "median": {"small": ms, "large": ml, "ratio_p50": ratio, "ratio_p99": ml["p99_ms"] / ms["p99_ms"],
                       "ratio_per_second": rate_ratio},
            "targets": {"p50_ratio_le_1.2": ok}}


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=None, help="length of each measured run")
    p.add_argument("--large", type=int, default=1_000_000, help="sessions in the large database")
    p.add_argument("--small", type=int, default=1_000, help="sessions in the small database")
    args = c.parse(p, argv)
    started = c.environment()
    rounds = args.rounds or (3 if args.quick else 5)
    seconds = args.seconds or (1.0 if args.quick else 2.0)
    warmup = 0.2 if args.quick else 0.3
    min_count = 500 if args.quick else 2000
    results = [bench_backend(b, args, rounds=rounds, seconds=seconds, warmup=warmup, min_count=min_count,
                             small_n=args.small,
                             large_n=args.large) for b in c.backends(args)]
    c.banner("Admission latency at scale: overall")
    print(c.table(
        ["backend", "small p50 ms", "large p50 ms", "ratio", "<=1.2", "small p99", "large p99", "small /s",
         "large /s"],
        [[r["label"], r["median"]["small"]["p50_ms"], r["median"]["large"]["p50_ms"], r["median"]["ratio_p50"],
          c.verdict(r["targets"]["p50_ratio_le_1.2"]), r["median"]["small"]["p99_ms"],
          r["median"]["large"]["p99_ms"], r["median"]["small"]["per_second"], r["median"]["large"]["per_second"]]
         for r in results]))
    return c.finish("scale", started, args, rounds, seconds, results)


if __name__ == "__main__":
    sys.exit(main())
