"""A local SMTP capture server: accepts every message and stores it in a Maildir.

It stands in for an email provider during the demo, tests and benchmarks; the Maildir can be
read with any mail client (``mutt -f .tailor/outbox``) or with ``read_outbox``. Optional faults
(refuse some recipients, defer some messages) let tests exercise the provider's error paths.
"""

from __future__ import annotations

import logging
import mailbox
import re
from dataclasses import dataclass, field
from email import message_from_binary_file
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class SinkFaults:
    refuse_recipients: re.Pattern[str] | None = None  # 550 at RCPT for matching addresses
    defer_first: int = 0  # 451 at end of data for the first N messages
    hang_up_first: int = 0  # store the first N messages, then drop the connection unanswered
    deferred: int = field(default=0, init=False)
    hung_up: int = field(default=0, init=False)


class CaptureHandler:
    def __init__(self, maildir: Path, faults: SinkFaults | None = None) -> None:
        maildir.parent.mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(str(maildir), create=True)
        for sub in ("tmp", "new", "cur"):  # create=True skips these if the folder exists
            (maildir / sub).mkdir(exist_ok=True)
        self.faults = faults or SinkFaults()
        self.accepted = 0

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        refuse = self.faults.refuse_recipients
        if refuse is not None and refuse.search(address):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.faults.deferred < self.faults.defer_first:
            self.faults.deferred += 1
            return "451 4.3.0 try again later"
        key = self.maildir.add(envelope.content)
        self.accepted += 1
        if self.faults.hung_up < self.faults.hang_up_first:
            self.faults.hung_up += 1
            server.transport.close()  # the client never learns the message was accepted
        return f"250 2.0.0 OK queued as {key}"


def start_sink(
    maildir: Path, host: str, port: int, faults: SinkFaults | None = None
) -> tuple[Controller, CaptureHandler]:
    """Start the capture server on a thread of its own; ``controller.stop()`` ends it."""
    # aiosmtpd logs every recipient address at INFO: addresses are PII, keep them out of logs.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    handler = CaptureHandler(maildir, faults)
    controller = Controller(handler, hostname=host, port=port, ready_timeout=10)
    controller.start()
    return controller, handler


@dataclass(frozen=True)
class CapturedEmail:
    path: Path
    headers: Message

    @property
    def to(self) -> str:
        return str(self.headers["To"])

    def full(self) -> EmailMessage:
        with self.path.open("rb") as fh:
            message = message_from_binary_file(fh, _class=EmailMessage, policy=default)
        assert isinstance(message, EmailMessage)
        return message


def read_outbox(maildir: Path, campaign_id: str | None = None) -> list[CapturedEmail]:
    """Captured emails (headers parsed), optionally only one campaign's."""
    parser = BytesHeaderParser()
    out: list[CapturedEmail] = []
    for sub in ("new", "cur"):
        folder = maildir / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            with path.open("rb") as fh:
                headers = parser.parse(fh)
            if campaign_id is None or headers["X-Tailor-Campaign"] == campaign_id:
                out.append(CapturedEmail(path, headers))
    return out
