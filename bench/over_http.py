"""Benchmark 2: admissions per second over HTTP, against the same server's /livez under the same load.

The server is `agentbilling serve` (uvicorn, one process) in a subprocess pinned to CPU 0 with
`taskset -c 0`; wrk is pinned to CPU 1 (`taskset -c 1 wrk -t2 -c16 --latency`), with bench/wrk.lua:
POST /v1/sessions with an id unique per request (random run prefix + wrk thread + per-thread counter)
and the tenant's API key, or GET /livez. Each round runs livez, admissions, livez against the same
server; the ratio of a round is admissions / mean(livez, livez). The database is fresh per backend;
the tenant, its API key and its plan (enterprise, limit 10^9) are made with the Python API before
the server starts. PostgreSQL's own processes are not pinned (they share both CPUs).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import common as c

WRK_LUA = c.BENCH_DIR / "wrk.lua"
CONNECTIONS = 16
WRK_THREADS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str, synchronous: str, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "AGENTBILLING_DATABASE_URL": url, "AGENTBILLING_OPERATOR_KEY": c.OPERATOR_KEY,
               "AGENTBILLING_SECRET_KEY": c.SECRET_KEY, "AGENTBILLING_SQLITE_SYNCHRONOUS": synchronous,
               "AGENTBILLING_TEST_CLOCK": "false"}
        exe = c.VENV_BIN / "agentbilling"
        cmd = [str(exe), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.log = log
        self.logf = open(log, "wb")
        self.proc = subprocess.Popen(["taskset", "-c", "0", *cmd], env=env, stdout=self.logf,
                                     stderr=subprocess.STDOUT, cwd=c.ROOT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited ({self.proc.returncode}); see {self.log}:\n"
                                 + self.log.read_text()[-2000:])
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.2)
        raise SystemExit(f"the server did not get ready in {timeout} s; see {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def postgres_cpu_seconds() -> float:
    """CPU time of every postgres process on the machine (ours and anyone else's), in seconds."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue
        if "(postgres)" in text:
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def wrk(base: str, mode: str, seconds: float, key: str, server_pid: int | None = None,
        postgres: bool = False) -> dict[str, Any]:
    prefix = f"h{c.run_id()}"
    cmd = ["taskset", "-c", "1", "wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s",
           "--timeout", "5s", "--latency", "-s", str(WRK_LUA), base, "--", mode, prefix, key]
    cpu0 = cpu_seconds(server_pid) if server_pid else 0.0
    pg0 = postgres_cpu_seconds() if postgres else 0.0
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    cpu = cpu_seconds(server_pid) - cpu0 if server_pid else float("nan")
    pg = postgres_cpu_seconds() - pg0 if postgres else float("nan")
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    data["mode"] = mode
    data["per_second"] = data["requests"] / (data["duration_us"] / 1e6)
    # CPU cost per request: less sensitive to a noisy neighbour than requests per second.
    data["server_cpu_us_per_request"] = cpu * 1e6 / data["requests"] if data["requests"] else float("nan")
    data["postgres_cpu_us_per_request"] = pg * 1e6 / data["requests"] if data["requests"] else float("nan")
    for k in ("p50", "p90", "p99", "p999", "max"):
        data[f"{k}_ms"] = data.pop(f"{k}_us") / 1000
    errors = data["connect_errors"] + data["read_errors"] + data["write_errors"] + data["timeouts"]
    if data["unexpected_status"] or errors:
        print(f"  !! {mode}: {data['unexpected_status']} unexpected statuses ({data['unexpected_sample']!r}),"
              f" {errors} socket errors/timeouts", flush=True)
    return data


def count_sessions(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url if url.startswith("sqlite") else url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM sessions")).scalar_one()
    finally:
        engine.dispose()


def bench_backend(backend: str, args: Any, *, rounds: int, seconds: float, warmup: float) -> dict[str, Any]:
    synchronous = "NORMAL"
    label = f"{backend} (WAL, synchronous={synchronous})" if backend == "sqlite" else "postgres"
    c.banner(f"HTTP admissions vs /livez: {label}: {rounds} rounds of livez / admit / livez, {seconds:g} s each,"
             f" {CONNECTIONS} connections")
    with c.Databases(backend, pg_admin_url=args.pg_url, synchronous=synchronous,
                     setup=lambda url, sync: c.build_tenant(url, sync, api_key=True)) as dbs:
        key = dbs.setup_result["api_key"]
        url = dbs.fresh("http")
        log = c.RESULTS / f"server-{backend}.log"
        server = Server(url, synchronous, log)
        livez: list[dict[str, Any]] = []
        admit: list[dict[str, Any]] = []
        ratios: list[float] = []
        try:
            pid, pg = server.proc.pid, backend == "postgres"
            wrk(server.base, "livez", warmup, key)
            wrk(server.base, "admit", warmup, key)
            for r in range(rounds):
                l1 = wrk(server.base, "livez", seconds, key, pid, pg)
                a = wrk(server.base, "admit", seconds, key, pid, pg)
                l2 = wrk(server.base, "livez", seconds, key, pid, pg)
                livez += [l1, l2]
                admit.append(a)
                ratios.append(a["per_second"] / ((l1["per_second"] + l2["per_second"]) / 2))
                print(f"  round {r + 1}: livez {l1['per_second']:,.0f}/s  admit {a['per_second']:,.0f}/s"
                      f"  livez {l2['per_second']:,.0f}/s  -> ratio {ratios[-1]:.3f}"
                      f"   (admit p50 {a['p50_ms']:.2f} p99 {a['p99_ms']:.2f} ms; server CPU per request:"
                      f" livez {l1['server_cpu_us_per_request']:.0f} us,"
                      f" admit {a['server_cpu_us_per_request']:.0f} us)",
                      flush=True)
        finally:
            server.stop()
        stored = count_sessions(url)

    rows = []
    for i, a in enumerate(admit):
        for s in (livez[2 * i], a, livez[2 * i + 1]):
            rows.append([str(i + 1), s["mode"], s["requests"], s["per_second"], s["p50_ms"], s["p90_ms"],
                         s["p99_ms"], s["p999_ms"], s["server_cpu_us_per_request"],
                         s["postgres_cpu_us_per_request"], s["unexpected_status"]])
    print()
    print(c.table(["round", "endpoint", "requests", "per s", "p50 ms", "p90 ms", "p99 ms", "p999 ms",
                   "server CPU us/req", "postgres CPU us/req", "non-2xx"], rows))

    def med(xs: list[dict[str, Any]], k: str) -> float:
        return c.median([x[k] for x in xs])

    keys = ("per_second", "p50_ms", "p99_ms", "p999_ms", "server_cpu_us_per_request", "postgres_cpu_us_per_request")
    summary = {
        "livez": {k: med(livez, k) for k in keys},
        "admit": {k: med(admit, k) for k in keys},
        "ratio": c.median(ratios),
    }
    summary["cpu_ratio"] = summary["livez"]["server_cpu_us_per_request"] / summary["admit"]["server_cpu_us_per_request"]
    print()
    print(c.table(["median over rounds", "per s", "p50 ms", "p99 ms", "p999 ms", "server CPU us/req",
                   "postgres CPU us/req"],
                  [["GET /livez", *summary["livez"].values()], ["POST /v1/sessions", *summary["admit"].values()]],
                  title=f"Summary: {label}"))
    ok_ratio, ok_p99 = summary["ratio"] >= 0.75, summary["admit"]["p99_ms"] < 15
    print(f"\n  admissions / livez: median {summary['ratio']:.3f} (rounds: {', '.join(f'{x:.3f}' for x in ratios)})"
          f"   target >= 0.75: {c.verdict(ok_ratio)}")
    print(f"  admission p99: median {summary['admit']['p99_ms']:.2f} ms   target < 15 ms: {c.verdict(ok_p99)}")
    print(f"  server CPU per request, livez / admit: {summary['cpu_ratio']:.3f} (the ratio a CPU-bound server"
          " would reach; steadier than req/s on a shared machine)")
    print(f"  sessions stored at the end: {stored:,} (server log: {log.relative_to(c.ROOT)})", flush=True)
    return {"backend": backend, "label": label, "connections": CONNECTIONS, "wrk_threads": WRK_THREADS,
            "rounds": [{"livez_before": livez[2 * i], "admit": a, "livez_after": livez[2 * i + 1],
                        "ratio": round(ratios[i], 4)} for i, a in enumerate(admit)],
            "median": summary, "sessions_stored": stored,
            "targets": {"ratio_ge_0.75": ok_ratio, "admit_p99_lt_15ms": ok_p99}}


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=None, help="length of each wrk run")
    args = c.parse(p, argv)
    started = c.environment()
    for tool in ("wrk", "taskset"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            raise SystemExit(f"{tool} is missing (apt-get install -y {'wrk' if tool == 'wrk' else 'util-linux'})")
    rounds = args.rounds or (2 if args.quick else 3)
    seconds = args.seconds or (3.0 if args.quick else 8.0)
    warmup = 1.0 if args.quick else 2.0
    results = [bench_backend(b, args, rounds=rounds, seconds=seconds, warmup=warmup) for b in c.backends(args)]
    c.banner("HTTP admissions vs /livez: overall")
    print(c.table(
        ["backend", "livez /s", "admit /s", "ratio", ">=0.75", "livez p50", "livez p99", "admit p50", "admit p99",
         "<15ms", "CPU us livez", "CPU us admit"],
        [[r["label"], r["median"]["livez"]["per_second"], r["median"]["admit"]["per_second"], r["median"]["ratio"],
          c.verdict(r["targets"]["ratio_ge_0.75"]), r["median"]["livez"]["p50_ms"], r["median"]["livez"]["p99_ms"],
          r["median"]["admit"]["p50_ms"], r["median"]["admit"]["p99_ms"],
          c.verdict(r["targets"]["admit_p99_lt_15ms"]), r["median"]["livez"]["server_cpu_us_per_request"],
          r["median"]["admit"]["server_cpu_us_per_request"]] for r in results]))
    return c.finish("http", started, args, rounds, seconds, results)


if __name__ == "__main__":
    sys.exit(main())
