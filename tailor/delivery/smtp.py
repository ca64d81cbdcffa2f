"""SMTP delivery with a durable claim committed right before the provider can accept.

An SMTP server accepts a message when it reads the end-of-data line (``.``). We stream the
message first, then run ``claim`` (the atomic consent check + ``dispatched`` commit), and only
then write the terminator. So a crash before the claim leaves a server-side transaction that is
discarded (safe to resend), and a crash after it leaves a row that is never resent.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum

import aiosmtplib

from tailor.config import Settings

_LEADING_DOT = re.compile(rb"(?m)^\.")


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # the server took responsibility for the message
    REFUSED = "refused"  # permanent refusal (5xx): do not retry
    DEFERRED = "deferred"  # temporary refusal (4xx), nothing accepted: safe to retry later
    NOT_CLAIMED = "not_claimed"  # the claim said no (consent gone, or another attempt has it)
    AMBIGUOUS = "ambiguous"  # end-of-data written, no reply: may have been accepted


@dataclass(frozen=True)
class DeliveryResult:
    outcome: Outcome
    provider_message_id: str | None = None
    detail: str | None = None


class DeliveryUnavailable(ConnectionError):
    """The server could not be reached or dropped us before anything was accepted."""


def _dot_stuff(message: bytes) -> bytes:
    message = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    message = _LEADING_DOT.sub(b"..", message)
    return message if message.endswith(b"\r\n") else message + b"\r\n"


def _refusal(code: int, message: str) -> DeliveryResult:
    outcome = Outcome.DEFERRED if 400 <= code < 500 else Outcome.REFUSED
    return DeliveryResult(outcome, detail=f"{code} {message}"[:500])


class SmtpSession:
    """One SMTP connection, reconnecting lazily. Not shared between tasks."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._smtp: aiosmtplib.SMTP | None = None

    async def _connection(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        s = self._settings
        smtp = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            timeout=s.smtp_timeout_s,
            start_tls=s.smtp_starttls,
            use_tls=False,
        )
        try:
            await smtp.connect()
            if s.smtp_username:
                await smtp.login(s.smtp_username, s.smtp_password or "")
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise DeliveryUnavailable(
                f"SMTP server {s.smtp_host}:{s.smtp_port} unavailable: {exc}"
            ) from exc
        self._smtp = smtp
        return smtp

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
        self._smtp = None

    async def send(
        self,
        *,
        mail_from: str,
        rcpt_to: str,
        message: bytes,
        claim: Callable[[Callable[[], None]], Awaitable[bool]],
    ) -> DeliveryResult:
        """``claim(end_of_data)`` must commit the send's claim and then call ``end_of_data``
        (synchronously, right after the commit) before it returns True."""
        smtp = await self._connection()
        try:
            await smtp.mail(mail_from)
            await smtp.rcpt(rcpt_to)
            start = await smtp.execute_command(b"DATA")
            if start.code != 354:
                await smtp.rset()
                return _refusal(start.code, start.message)
            assert smtp.protocol is not None
            smtp.protocol.write(_dot_stuff(message))
        except aiosmtplib.SMTPResponseException as exc:
            # MAIL or RCPT refused: the transaction is still open on the server.
            try:
                await smtp.rset()
            except aiosmtplib.SMTPException:
                self._drop()
            return _refusal(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            self._drop()
            raise DeliveryUnavailable(f"SMTP connection lost before end of data: {exc}") from exc

        protocol = smtp.protocol

        def end_of_data() -> None:
            # The reply may arrive before we await it: mark it expected first, as
            # aiosmtplib's own execute_command does, or the protocol drops it as unsolicited.
            protocol._response_pending = True
            protocol.write(b".\r\n")

        try:
            claimed = await claim(end_of_data)
        except aiosmtplib.SMTPServerDisconnected as exc:
            # The server went away before end-of-data could be written: nothing was accepted.
            self._drop()
            return DeliveryResult(Outcome.DEFERRED, detail=f"connection lost: {exc}")
        except BaseException:
            self._drop()  # closing mid-DATA makes the server discard the message
            raise
        if not claimed:
            self._drop()
            return DeliveryResult(Outcome.NOT_CLAIMED)

        try:
            reply = await protocol.read_response(timeout=self._settings.smtp_timeout_s)
        except (aiosmtplib.SMTPException, OSError) as exc:
            self._drop()
            return DeliveryResult(Outcome.AMBIGUOUS, detail=f"no reply after end of data: {exc}")
        if reply.code == 250:
            return DeliveryResult(Outcome.ACCEPTED, provider_message_id=reply.message[:300])
        return _refusal(reply.code, reply.message)

    async def close(self) -> None:
        if self._smtp is not None and self._smtp.is_connected:
            try:
                await self._smtp.quit()
            except aiosmtplib.SMTPException:
                pass
        self._drop()


class SmtpDelivery:
    """The SMTP provider: hands out sessions to the dispatcher."""

    name = "smtp"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @asynccontextmanager
    async def session(self) -> AsyncIterator[SmtpSession]:
        session = SmtpSession(self._settings)
        try:
            yield session
        finally:
            await session.close()

    async def health(self) -> bool:
        """Connect and NOOP: the breaker's health check."""
        session = SmtpSession(self._settings)
        try:
            smtp = await session._connection()
            await smtp.noop()
            return True
        except (DeliveryUnavailable, aiosmtplib.SMTPException, OSError):
            return False
        finally:
            await session.close()
