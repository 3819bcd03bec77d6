"""A real `agentbilling worker` process killed with SIGKILL in the middle of sending a batch of
emails, then started again: nothing is lost, and at most the one email in flight when it died is
sent twice (with the same Message-ID), as the README promises."""

from __future__ import annotations

import asyncio
import email
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from agentbilling.client import Billing
from agentbilling.delivery.email import message_id
from agentbilling.domain.notices import Notice, NoticeType
from agentbilling.settings import Settings
from agentbilling.usecases.notices import record
from tests.support.service import free_port

pytestmark = pytest.mark.slow
AGENTBILLING = str(Path(sys.executable).with_name("agentbilling"))
N = 40


class SlowInbox:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        await asyncio.sleep(0.05)  # slow enough to kill the worker mid-batch
        msg = email.message_from_bytes(envelope.content)
        with self.lock:
            self.ids.append(msg["Message-ID"])
        return "250 OK"

    def count(self) -> int:
        with self.lock:
            return len(self.ids)


def _worker(settings: Settings, port: int, *args: str) -> subprocess.Popen:
    env = {**os.environ, "AGENTBILLING_DATABASE_URL": settings.database_url,
           "AGENTBILLING_SECRET_KEY": settings.secret_key or "x", "AGENTBILLING_TEST_CLOCK": "1",
           "AGENTBILLING_SMTP_URL": f"smtp://127.0.0.1:{port}", "AGENTBILLING_DELIVERY_CLAIM_SECONDS": "1",
           "AGENTBILLING_WORKER_INTERVAL": "0.2"}
    return subprocess.Popen([AGENTBILLING, "worker", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_a_worker_killed_mid_batch_and_started_again_loses_nothing(settings: Settings, billing: Billing):
    billing.create_tenant("acme", "Acme", "billing@acme.test")
    with billing.db.write() as conn:
        record(conn, "acme", [Notice(NoticeType.PAYMENT_FAILED, f"payment_failed:{i}", f"Notice {i}", "x")
                              for i in range(N)], billing.now())
    inbox = SlowInbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        first = _worker(settings, port)
        deadline = time.monotonic() + 60
        while inbox.count() < 8:
            assert first.poll() is None, first.stdout.read() if first.stdout else ""
            assert time.monotonic() < deadline, "the worker sent nothing"
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        at_kill = inbox.count()
        assert at_kill < N, "the worker finished before it was killed; the test proves nothing"

        time.sleep(1.2)  # the dead worker's claim lapses
        again = _worker(settings, port, "--once")
        out, _ = again.communicate(timeout=120)
        assert again.returncode == 0, out

        listed, _ = billing.list_notices("acme", limit=100)  # ours, and any the workers' passes found due
        assert len(listed) >= N and {n.email_status for n in listed} == {"sent"}
        ids = inbox.ids
        assert set(ids) == {message_id(n.id) for n in listed}  # nothing lost
        assert len(ids) - len(listed) <= 1, ids  # at most the one in flight, sent again with the same Message-ID
    finally:
        controller.stop()
