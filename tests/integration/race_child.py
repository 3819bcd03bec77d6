"""A child process of test_gate_race: fires admissions on command, as one of several `serve`
processes would.

    python race_child.py DATABASE_URL THREADS START_ISO

Reads lines `go KEY PREFIX N` from stdin: N admissions of new ids under the API key, on THREADS
threads at once; answers `done ADMITTED REFUSED`.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from agentbilling.client import connect
from agentbilling.clock import TestClock
from agentbilling.settings import Settings


def main() -> None:
    url, threads, start = sys.argv[1:4]
    settings = Settings(database_url=url, secret_key="race-test", test_clock=True, db_pool_size=8)
    billing = connect(settings, clock=TestClock(datetime.fromisoformat(start)), upgrade=False)
    pool = ThreadPoolExecutor(max_workers=int(threads))
    print("ready", flush=True)
    for line in sys.stdin:
        _, key, prefix, n = line.split()

        def admit(i: int, key: str = key, prefix: str = prefix) -> bool:
            result = billing.open_session_for_key(key, f"{prefix}-{i}", agent_id="a", direction="inbound")
            return result is not None and result.session is not None

        admitted = sum(pool.map(admit, range(int(n))))
        print(f"done {admitted} {int(n) - admitted}", flush=True)
    billing.close()


if __name__ == "__main__":
    main()
