"""Notice emails through a real SMTP server (aiosmtpd, started by the test), and the outbox folder.

Each email once, in order, to the billing contact, its type in the X-Agentbilling-Notice header;
a server that refuses is tried again later; a worker that died after claiming frees its emails.
"""

from __future__ import annotations

import email
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from agentbilling.client import Billing, connect
from agentbilling.clock import TestClock
from agentbilling.settings import Settings
from agentbilling.usecases.notices import CLAIM
from tests.support.service import free_port

pytestmark = pytest.mark.slow


class Inbox:
    """An aiosmtpd handler that keeps what it is given; `refuse` makes it answer 451 instead."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.refuse = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            if self.refuse:
                self.refuse -= 1
                return "451 Try again later"
            msg = email.message_from_bytes(envelope.content)
            msg["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
            self.messages.append(msg)
        return "250 OK"

    def types(self) -> list[str]:
        with self.lock:
            return [m["X-Agentbilling-Notice"] for m in self.messages]


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def mailed(settings: Settings, clock: TestClock, inbox) -> Iterator[Billing]:
    _, port = inbox
    service = connect(Settings(**{**settings.model_dump(), "smtp_url": f"smtp://127.0.0.1:{port}"}), clock=clock,
                      upgrade=False)
    yield service
    service.close()


def _fill(b: Billing, prefix: str, n: int) -> None:
    for i in range(n):
        assert b.open_session("acme", f"{prefix}{i}", agent_id="a", direction="inbound").refusal is None


def test_a_whole_trial_sends_exactly_the_trial_emails_once_in_order_to_the_billing_contact(mailed, inbox):
    box, _ = inbox
    b = mailed
    b.create_tenant("acme", "Acme", "billing@acme.test")
    _fill(b, "a", 30)
    b.run_due()  # the worker's pass: 60% of the trial's sessions
    b.advance_clock(seconds=7 * 86400)
    _fill(b, "b", 15)
    b.advance_clock(seconds=5 * 86400)
    b.advance_clock(seconds=10 * 86400)  # past the end
    b.run_due()
    b.run_due()  # passes again: nothing more
    assert box.types() == ["trial_sessions_60", "trial_days_7", "trial_sessions_90", "trial_days_2", "trial_ended"]
    for m in box.messages:
        assert m["To"] == "billing@acme.test" and m["X-Envelope-To"] == "billing@acme.test"
        assert m["Message-ID"].startswith("<ntc_") and m.is_multipart()
        kinds = [part.get_content_type() for part in m.walk() if not part.is_multipart()]
        assert kinds == ["text/plain", "text/html"]
    assert box.messages[1]["Subject"] == "Your free trial ends in 7 days"
    listed, _ = b.list_notices("acme", limit=10)
    assert {n.email_status for n in listed} == {"sent"}


def test_limit_warnings_and_the_failed_payment_sequence_by_email(mailed, inbox):
    box, _ = inbox
    b = mailed
    b.create_tenant("acme", "Acme", "billing@acme.test")
    b.put_subscription("acme", "starter")
    b.set_session_limit("acme", 10)
    _fill(b, "s", 10)
    b.run_due()
    assert box.types() == ["limit_80", "limit_100"]


def test_the_failed_payment_sequence_by_email(mailed, inbox):
    box, _ = inbox
    b = mailed
    b.create_tenant("acme", "Acme", "billing@acme.test")
    co = b.checkout("acme", "starter", base_url="http://billing.test")
    b.sandbox_complete_checkout(co.id, "4242424242424242")
    b.sandbox_add_payment_method("acme", "4000000000000341")  # every charge on it fails
    b.advance_clock(to=datetime(2026, 3, 31, 9, 0, tzinfo=UTC))  # renewal Feb 28 fails; grace to Mar 7
    assert box.types() == ["payment_failed", "grace_ending", "payment_overdue", "subscription_expired"]
    assert box.messages[0]["Subject"] == "Your payment failed"


def test_a_refusing_server_gets_the_email_later_and_only_once(mailed, inbox):
    box, _ = inbox
    b = mailed
    b.create_tenant("acme", "Acme", "billing@acme.test")
    box.refuse = 1
    _fill(b, "a", 30)
    b.run_due()
    assert box.types() == []
    (n,) = b.list_notices("acme")[0]
    assert n.email_status == "pending"
    b.run_due()  # not due again yet: the retry waits a minute (wall clock)
    assert box.types() == []
    b.wall_clock = _Later(b.wall_clock, timedelta(minutes=2))
    b.run_due()
    b.run_due()
    assert box.types() == ["trial_sessions_60"]


class _Later:
    def __init__(self, clock, by: timedelta) -> None:
        self.clock, self.by = clock, by

    def now(self):
        return self.clock.now() + self.by


def test_a_worker_that_died_after_claiming_frees_its_emails_after_the_claim(mailed, inbox):
    box, _ = inbox
    b = mailed
    b.create_tenant("acme", "Acme", "billing@acme.test")
    _fill(b, "a", 30)
    b.notices.detect(b.now())
    claimed = b.notices.claim(b.wall_clock.now())  # a worker claims, then dies before sending
    assert [n.type for n in claimed] == ["trial_sessions_60"]
    assert b.deliver_notices() == 0  # held by the dead worker's claim
    b.wall_clock = _Later(b.wall_clock, CLAIM + timedelta(seconds=1))
    assert b.deliver_notices() == 1
    assert b.deliver_notices() == 0
    assert box.types() == ["trial_sessions_60"]


def test_without_smtp_the_emails_are_files_in_the_outbox(settings: Settings, clock: TestClock, tmp_path: Path):
    folder = tmp_path / "outbox"
    b = connect(Settings(**{**settings.model_dump(), "outbox_dir": str(folder)}), clock=clock, upgrade=False)
    try:
        b.create_tenant("acme", "Acme", "billing@acme.test")
        _fill(b, "a", 30)
        b.run_due()
        b.run_due()
        (path,) = folder.glob("*.eml")
        msg = email.message_from_bytes(path.read_bytes())
        assert msg["X-Agentbilling-Notice"] == "trial_sessions_60" and msg["To"] == "billing@acme.test"
        assert list(folder.glob("*.part")) == []
    finally:
        b.close()


class _Counting:
    """A mailer that keeps every Message-ID it is handed, from any thread."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()

    def send(self, msg) -> None:
        with self.lock:
            self.ids.append(msg["Message-ID"])


def test_two_workers_racing_over_a_thousand_due_emails_send_each_once(settings: Settings, clock: TestClock):
    from agentbilling.domain.notices import Notice, NoticeType
    from agentbilling.usecases.notices import record

    setup = connect(settings, clock=clock, upgrade=False)
    for t in range(20):
        setup.create_tenant(f"t{t}", f"T{t}", f"billing@t{t}.test")
        with setup.db.write() as conn:
            record(conn, f"t{t}", [Notice(NoticeType.PAYMENT_FAILED, f"payment_failed:{i}", "Your payment failed", "x")
                                   for i in range(50)], setup.now())
    workers = [connect(settings, clock=clock, upgrade=False) for _ in range(2)]
    mailer = _Counting()
    counts = [0, 0]
    start = threading.Barrier(2)

    def run(i: int) -> None:
        start.wait()
        counts[i] = workers[i].notices.deliver(mailer, workers[i].wall_clock.now, sender="x@y.test", link=None,
                                               batch=25)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    try:
        assert len(mailer.ids) == 1000 and len(set(mailer.ids)) == 1000  # each once
        assert sum(counts) == 1000 and all(counts), counts  # both took a share
        with setup.db.read() as conn:
            from sqlalchemy import func, select

            from agentbilling.storage.tables import notices
            left = conn.execute(select(func.count()).select_from(notices).where(notices.c.email_status != "sent"))
            assert left.scalar() == 0
    finally:
        for w in (setup, *workers):
            w.close()


def test_every_notice_type_has_its_own_text_and_html_email():
    from agentbilling.delivery.email import NOTICE_HEADER, build
    from agentbilling.domain.notices import NoticeType
    from agentbilling.usecases.results import NoticeRecord

    bodies = set()
    for kind in NoticeType:
        n = NoticeRecord("ntc_1", "acme", kind.value, f"{kind}:k", "A <title>", "Some text.",
                         datetime(2026, 2, 1, tzinfo=UTC), "billing@acme.test", "pending", None)
        msg = build(n, sender="b@x.test", tenant_name="Acme", link="https://billing.test/billing")
        text = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        assert msg[NOTICE_HEADER] == kind.value and "Some text." in text and "Some text." in html
        assert "A &lt;title&gt;" in html  # escaped in HTML
        action = text.split("Some text.")[1].split("Open Profile > Billing:")[0].strip()
        assert action and action not in bodies, kind  # its own call to action
        bodies.add(action)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_credentials_in_the_url_log_in(settings, clock):
    from aiosmtpd.smtp import AuthResult, LoginPassword

    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password) if isinstance(auth_data, LoginPassword) else None)
        return AuthResult(success=logins[-1] == (b"ops", b"p@ss word"))

    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_required=True, auth_require_tls=False)  # TLS is smtps:// or smtp+starttls://
    controller.start()
    url = f"smtp://ops:p%40ss%20word@127.0.0.1:{port}"  # URL-encoded, as a password with @ and a space must be
    b = connect(Settings(**{**settings.model_dump(), "smtp_url": url}), clock=clock, upgrade=False)
    try:
        b.create_tenant("acme", "Acme", "billing@acme.test")
        _fill(b, "a", 30)
        b.run_due()
        assert handler.types() == ["trial_sessions_60"] and logins == [(b"ops", b"p@ss word")]
    finally:
        b.close()
        controller.stop()
