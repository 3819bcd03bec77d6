"""The child process of test_durability: admits sessions until it is killed.

    python crash_child.py DATABASE_URL TENANT_ID ID_PREFIX THREADS START_ISO CREATE(0|1)

Prints `ready` once set up, then `admitted <id>` after each open_session that admitted a new
session has returned (the admission is committed by then). Never exits on its own in time:
the parent kills it with SIGKILL in the middle of the loop.
"""

from __future__ import annotations

import sys
import threading
from datetime import datetime

from agentbilling.client import connect
from agentbilling.clock import TestClock
from agentbilling.settings import Settings


def main() -> None:
    url, tenant_id, prefix, threads, start, create = sys.argv[1:7]
    settings = Settings(database_url=url, secret_key="crash-test", test_clock=True, db_pool_size=4)
    billing = connect(settings, clock=TestClock(datetime.fromisoformat(start)), upgrade=False)
    if create == "1":
        billing.create_tenant(tenant_id, "Crash", "billing@crash.test")
        billing.put_subscription(tenant_id, "scale")  # a limit of 24,000: never reached here
    out = threading.Lock()
    print("ready", flush=True)

    def admit(worker: int) -> None:
        for i in range(1_000_000):
            sid = f"{prefix}-{worker}-{i}"
            result = billing.open_session(tenant_id, sid, agent_id="agent-1", direction="inbound")
            with out:
                if result.session is not None and not result.replay:
                    print(f"admitted {sid}", flush=True)
                else:
                    print(f"unexpected {sid} {result}", flush=True)

    workers = [threading.Thread(target=admit, args=(w,)) for w in range(int(threads))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


if __name__ == "__main__":
    main()
