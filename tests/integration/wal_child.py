"""A child process of test_sqlite_wal: admits sessions, records messages and reads the billing view
for the given number of seconds, on two threads, as one of several `serve` processes would.

    python wal_child.py DATABASE_URL TENANT_ID ID_PREFIX SECONDS START_ISO
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import datetime

from agentbilling.client import connect
from agentbilling.clock import TestClock
from agentbilling.settings import Settings


def main() -> None:
    url, tenant_id, prefix, seconds, start = sys.argv[1:6]
    settings = Settings(database_url=url, secret_key="wal-test", test_clock=True, db_pool_size=4)
    billing = connect(settings, clock=TestClock(datetime.fromisoformat(start)), upgrade=False)
    end = time.monotonic() + float(seconds)
    print("ready", flush=True)

    def write(worker: int) -> None:
        i = 0
        while time.monotonic() < end:
            sid = f"{prefix}-{worker}-{i}"
            billing.open_session(tenant_id, sid, agent_id="agent-" + "x" * 40, direction="inbound")
            billing.record_message(tenant_id, sid, "customer")
            i += 1

    def read() -> None:
        while time.monotonic() < end:
            billing.billing_view(tenant_id)
            billing.list_sessions(tenant_id, limit=50)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(2)] + [threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    billing.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
