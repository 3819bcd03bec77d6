"""Where notice emails go: an SMTP server (AGENTBILLING_SMTP_URL), else an outbox folder of .eml files.
Each message is built once per notice (`build`), from its type's templates in `email_templates/`."""

from __future__ import annotations

import os
import smtplib
import ssl
import tempfile
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape

from agentbilling.usecases.results import NoticeRecord

NOTICE_HEADER = "X-Agentbilling-Notice"
_templates = Environment(loader=FileSystemLoader(Path(__file__).with_name("email_templates")),
                         autoescape=select_autoescape(["html"]), keep_trailing_newline=True)


def message_id(notice_id: str) -> str:
    """The same for every try of one notice, so a mail system can drop a second copy."""
    return f"<{notice_id}@agentbilling>"


def build(notice: NoticeRecord, *, sender: str, tenant_name: str, link: str | None) -> EmailMessage:
    """A notice's message: its id as Message-ID, its type in the X-Agentbilling-Notice header.

    Text and HTML parts from the type's own templates (`email_templates/<type>.txt` and `.html`, on top of
    `base.txt` and `base.html`)."""
    msg = EmailMessage()
    msg["Subject"] = notice.title
    msg["From"] = sender
    msg["To"] = notice.email_to or ""
    msg["Date"] = format_datetime(notice.created_at)
    msg["Message-ID"] = message_id(notice.id)
    msg[NOTICE_HEADER] = notice.type
    context = {"notice": notice, "tenant_name": tenant_name, "link": link}
    # Each notice type has its own pair of templates (on top of base.txt and base.html).
    msg.set_content(_templates.get_template(f"{notice.type}.txt").render(context))
    msg.add_alternative(_templates.get_template(f"{notice.type}.html").render(context), subtype="html")
    return msg


class Mailer(Protocol):
    def send(self, msg: EmailMessage) -> None: ...


class SmtpMailer:
    """smtp://host:port (plain), smtp+starttls://… (STARTTLS), smtps://… (TLS); user:password@ logs in."""

    def __init__(self, url: str, *, timeout: float = 30) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtp+starttls", "smtps") or not parts.hostname:
            raise ValueError("AGENTBILLING_SMTP_URL must look like smtp://host:25, smtp+starttls://host:587 or "
                             "smtps://user:password@host:465")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or {"smtp": 25, "smtp+starttls": 587, "smtps": 465}[parts.scheme]
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout

    def send(self, msg: EmailMessage) -> None:
        context = ssl.create_default_context()
        if self.scheme == "smtps":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with conn:
            if self.scheme == "smtp+starttls":
                conn.starttls(context=context)
            if self.user:
                conn.login(self.user, self.password or "")
            conn.send_message(msg)


class OutboxMailer:
    """Each message as <Message-ID>.eml in a folder: written whole (rename), the same file on a retry."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def send(self, msg: EmailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = (msg["Message-ID"] or make_msgid()).strip("<>").split("@")[0] + ".eml"
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(msg.as_bytes())
        os.replace(tmp, self.folder / name)


def mailer_for(smtp_url: str | None, outbox: str | Path) -> Mailer:
    return SmtpMailer(smtp_url) if smtp_url else OutboxMailer(outbox)
