"""Shared pieces of the benchmarks: databases to measure on, timing loops, statistics, reports.

Every measured run gets a database of its own, copied from a migrated template (a SQLite file,
or a PostgreSQL database created `TEMPLATE ...`), so no run sees the rows of an earlier one.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
VENV_BIN = Path(sys.executable).parent

TENANT = "bench"
AGENT = "bench-agent"
HUGE = 10**9
SECRET_KEY = "bench-secret-key-not-for-production"
OPERATOR_KEY = "bench-operator-key"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


# -- command line -------------------------------------------------------------------------------

def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="fewer rounds, shorter runs (a smoke check, noisier)")
    p.add_argument("--db", default="sqlite,postgres",
                   help="comma-separated backends: sqlite, postgres (default both)")
    p.add_argument("--rounds", type=int, default=None, help="override the number of rounds")
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG),
                   help="PostgreSQL admin URL; a database is created (and dropped) per run")
    return p


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """bench/run passes every option to every benchmark: one that is not this one's is ignored."""
    args, unknown = p.parse_known_args(argv)
    if unknown:
        print(f"({p.prog}: ignoring {' '.join(unknown)}, not an option of this benchmark)", flush=True)
    return args


def backends(args: argparse.Namespace) -> list[str]:
    wanted = [b.strip().lower() for b in args.db.split(",") if b.strip()]
    aliases = {"pg": "postgres", "postgresql": "postgres"}
    out = [aliases.get(b, b) for b in wanted]
    for b in out:
        if b not in ("sqlite", "postgres"):
            raise SystemExit(f"unknown backend {b!r}")
    if "postgres" in out and not pg_available(args.pg_url):
        print(f"!! PostgreSQL at {args.pg_url} does not answer: skipping it", flush=True)
        out.remove("postgres")
    return out


# -- statistics ---------------------------------------------------------------------------------

def percentile(sorted_ns: Sequence[int], q: float) -> float:
    """The q-quantile (0..1) of sorted samples, nearest rank; in nanoseconds."""
    if not sorted_ns:
        return float("nan")
    k = min(len(sorted_ns) - 1, max(0, int(round(q * len(sorted_ns) + 0.5)) - 1))
    return float(sorted_ns[k])


@dataclass
class Sample:
    """One measured run: how many operations, over how long, and the latency of each."""

    label: str
    count: int
    seconds: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, "count": self.count, "seconds": round(self.seconds, 4),
                "per_second": round(self.rate, 1), "p50_ms": round(self.p50_ms, 4),
                "p99_ms": round(self.p99_ms, 4), "p999_ms": round(self.p999_ms, 4),
                "max_ms": round(self.max_ms, 4), **self.extra}


def sample_from(label: str, lat_ns: list[int], seconds: float, **extra: Any) -> Sample:
    lat_ns.sort()
    return Sample(label, len(lat_ns), seconds, percentile(lat_ns, 0.50) / 1e6, percentile(lat_ns, 0.99) / 1e6,
                  percentile(lat_ns, 0.999) / 1e6, (lat_ns[-1] if lat_ns else 0) / 1e6, extra)


def timed_loop(op: Callable[[str], None], *, seconds: float, warmup: float, prefix: str,
               ids: Callable[[str, int], str] | None = None, min_count: int = 0,
               max_seconds: float | None = None) -> tuple[list[int], float]:
    """Call op(new_id) back to back for `seconds` (after `warmup`), timing each call.

    A slow contender runs on past `seconds` until it has `min_count` calls (so that a p999 means
    something), but never past `max_seconds`. Returns the latencies (ns) and the wall time of the
    measured part; the id is built outside the timed call but inside the wall time, for every
    contender alike.
    """
    make = ids or (lambda p, i: f"{p}{i:09d}")
    perf = time.perf_counter_ns
    i = 0
    end = perf() + int(warmup * 1e9)
    while perf() < end:
        op(make(prefix + "w", i))
        i += 1
    gc.collect()
    lat: list[int] = []
    append = lat.append
    start = perf()
    deadline = start + int(seconds * 1e9)
    hard = start + int((max_seconds or seconds) * 1e9)
    n = 0
    b = start
    while b < deadline or (n < min_count and b < hard):
        sid = make(prefix, n)
        a = perf()
        op(sid)
        b = perf()
        append(b - a)
        n += 1
    return lat, (b - start) / 1e9


def counted_loop(op: Callable[[str], None], *, count: int, warmup: int, prefix: str,
                 ids: Callable[[str, int], str]) -> tuple[list[int], float]:
    """Like timed_loop, but a fixed number of calls."""
    perf = time.perf_counter_ns
    for i in range(warmup):
        op(ids(prefix + "w", i))
    gc.collect()
    lat: list[int] = []
    start = perf()
    for n in range(count):
        sid = ids(prefix, n)
        a = perf()
        op(sid)
        lat.append(perf() - a)
    return lat, (perf() - start) / 1e9


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# -- reporting ----------------------------------------------------------------------------------

def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            if v != v:
                return "-"
            if abs(v) >= 1000:
                return f"{v:,.0f}"
            if abs(v) >= 100:
                return f"{v:.1f}"
            return f"{v:.3f}"
        return str(v)

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    out = []
    if title:
        out.append(title)
    out.append("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True))))
    out.append("  ".join("-" * w for w in widths))
    for r in cells:
        out.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(out)


def environment() -> dict[str, Any]:
    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return ""

    import agentbilling

    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "agentbilling_measured": str(Path(agentbilling.__file__).parent),
        "tag": os.environ.get("BENCH_TAG") or None,
        "git_commit": run(["git", "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(run(["git", "status", "--porcelain", "--", "src"])),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "machine": platform.platform(),
    }


def _finite(value: Any) -> Any:
    """NaN (a figure that does not apply) as null, so that the JSON is strict."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def finish(name: str, started: dict[str, Any], args: Any, rounds: int, seconds: float,
           results: list[dict[str, Any]], **extra: Any) -> int:
    """Every benchmark's last step: its JSON summary written, and where it went printed."""
    path = write_json(name, {"environment": started, "quick": args.quick, "rounds": rounds,
                             "seconds_per_run": seconds, **extra, "results": results})
    print(f"\n  JSON: {path.relative_to(ROOT)}", flush=True)
    return 0


def write_json(name: str, payload: dict[str, Any]) -> Path:
    """bench/results/NAME[-TAG]-STAMP.json and NAME[-TAG]-latest.json (TAG from $BENCH_TAG)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = os.environ.get("BENCH_TAG", "").strip()
    if tag:
        name = f"{name}-{''.join(ch if ch.isalnum() or ch in '-_' else '-' for ch in tag)}"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    begun = payload.pop("environment", None) or {}
    env = environment()
    env["loadavg_at_end"] = env.pop("loadavg_at_start")
    env["finished"] = env.pop("when")
    env["started"] = begun.get("when")
    env["loadavg_at_start"] = begun.get("loadavg_at_start")
    payload = {"benchmark": name, "environment": env, **payload}
    path = RESULTS / f"{name}-{stamp}.json"
    text = json.dumps(_finite(payload), indent=2, default=str)
    path.write_text(text)
    (RESULTS / f"{name}-latest.json").write_text(text)
    return path


# -- databases ----------------------------------------------------------------------------------

def pg_available(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:
        return False


def pg_conninfo(sqlalchemy_or_libpq_url: str) -> str:
    return sqlalchemy_or_libpq_url.replace("postgresql+psycopg://", "postgresql://")


def pg_url_for(admin_url: str, dbname: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(pg_conninfo(admin_url)).set(database=dbname).render_as_string(hide_password=False)


class Databases:
    """Fresh databases for one backend: a migrated template set up once, copied per run."""

    def __init__(self, backend: str, *, pg_admin_url: str = DEFAULT_PG, synchronous: str = "NORMAL",
                 setup: Callable[[str, str], Any] | None = None) -> None:
        self.backend = backend
        self.synchronous = synchronous
        self.pg_admin_url = pg_conninfo(pg_admin_url)
        self.tag = f"{os.getpid()}_{secrets.token_hex(3)}"
        self.made: list[str] = []
        self.workdir = RESULTS / "tmp" / f"db-{self.tag}"
        if backend == "sqlite":
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.template = str(self.workdir / "template.db")
            self.template_url = f"sqlite:///{self.template}"
        else:
            self.template = f"agentbilling_bench_tpl_{self.tag}"
            self._admin(f'CREATE DATABASE "{self.template}"')
            self.template_url = pg_url_for(self.pg_admin_url, self.template)
        self.setup_result = build_tenant(self.template_url, synchronous) if setup is None else setup(
            self.template_url, synchronous)

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
            conn.execute(sql)

    def fresh(self, name: str = "run") -> str:
        """A new database with the template's rows, as a URL for agentbilling."""
        n = len(self.made)
        if self.backend == "sqlite":
            path = self.workdir / f"{name}-{n}.db"
            shutil.copyfile(self.template, path)
            self.made.append(str(path))
            return f"sqlite:///{path}"
        db = f"agentbilling_bench_{name}_{self.tag}_{n}"
        self._admin(f'CREATE DATABASE "{db}" TEMPLATE "{self.template}"')
        self.made.append(db)
        return pg_url_for(self.pg_admin_url, db)

    def drop(self, url: str) -> None:
        if self.backend == "sqlite":
            path = url.removeprefix("sqlite:///")
            for suffix in ("", "-wal", "-shm"):
                Path(path + suffix).unlink(missing_ok=True)
        else:
            from sqlalchemy.engine import make_url

            self._admin(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')

    def close(self) -> None:
        if self.backend == "sqlite":
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            for db in self.made:
                self._admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            self._admin(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')

    def __enter__(self) -> Databases:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def settings_for(url: str, synchronous: str = "NORMAL"):
    """The service's settings; `synchronous` is SQLite's (NORMAL, FULL) or, on PostgreSQL, "off"
    for `synchronous_commit=off` (anything else: as the server is configured)."""
    from agentbilling.settings import Settings

    pg = url.startswith("postgres")
    return Settings(database_url=url, secret_key=SECRET_KEY, operator_key=OPERATOR_KEY,
                    sqlite_synchronous="NORMAL" if pg else synchronous,
                    pg_synchronous_commit="off" if pg and synchronous == "off" else None, test_clock=False)


def connect_service(url: str, synchronous: str = "NORMAL", *, upgrade: bool = False):
    from agentbilling.client import connect
    from agentbilling.clock import SystemClock

    return connect(settings_for(url, synchronous), clock=SystemClock(), upgrade=upgrade)


def build_tenant(url: str, synchronous: str = "NORMAL", *, api_key: bool = False) -> dict[str, Any]:
    """Migrate, then a tenant on the enterprise plan with a limit nothing here reaches."""
    from agentbilling.domain.plans import Terms

    billing = connect_service(url, synchronous, upgrade=True)
    try:
        billing.create_tenant(TENANT, "Bench Tenant", "billing@bench.test")
        billing.put_subscription(TENANT, "enterprise", Terms(base_session_limit=HUGE, max_session_limit=HUGE))
        out: dict[str, Any] = {}
        if api_key:
            out["api_key"] = billing.create_api_key(TENANT).key
        return out
    finally:
        billing.close()


@dataclass
class Interleaved:
    """Rounds of baseline, candidate, baseline; the candidate's ratio is to the mean of its two baselines."""

    baseline: list[Sample] = field(default_factory=list)
    candidate: list[Sample] = field(default_factory=list)

    def ratios(self) -> list[float]:
        out = []
        for i, c in enumerate(self.candidate):
            b1, b2 = self.baseline[2 * i], self.baseline[2 * i + 1]
            out.append(c.rate / ((b1.rate + b2.rate) / 2))
        return out

    def medians(self, which: str) -> dict[str, float]:
        xs = self.baseline if which == "baseline" else self.candidate
        return {"per_second": median([s.rate for s in xs]), "p50_ms": median([s.p50_ms for s in xs]),
                "p99_ms": median([s.p99_ms for s in xs]), "p999_ms": median([s.p999_ms for s in xs]),
                "worst_p999_ms": max((s.p999_ms for s in xs), default=float("nan"))}


def banner(text: str) -> None:
    print("\n" + "=" * 100 + f"\n{text}\n" + "=" * 100, flush=True)


def run_id() -> str:
    return secrets.token_hex(4)


def chunks(it: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(it), n):
        yield it[i:i + n]
