"""The SMTP side: building an RFC 5322 message and handing it to the mail server with aiosmtplib.

One connection is kept and reused across messages; a connection the server dropped is opened again
once before a message counts as not sent. What went wrong is classified for the sender: the
server cannot be reached (all mail waits), it answered 4xx (this message waits) or it answered 5xx
(this message is refused for good)."""

from __future__ import annotations

import contextlib
import email.policy
import time
from collections.abc import Callable
from datetime import datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import aiosmtplib

from services.notifier.rendering import RenderedEmail
from shared.logging import get_logger
from shared.settings import Settings, SmtpSecurity

log = get_logger(__name__)

CONNECT_TIMEOUT = 30.0
# Bodies as quoted-printable or base64, whichever is shorter: any server takes 7-bit mail.
SEVEN_BIT = email.policy.default.clone(cte_type="7bit")


class DeliveryError(Exception):
    """A message was not sent. ``permanent``: the server refused it for good (5xx)."""

    def __init__(self, message: str, *, permanent: bool, server_unreachable: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.server_unreachable = server_unreachable


def compose(
    email: RenderedEmail,
    *,
    sender: str,
    recipient: str,
    message_id: str,
    language: str,
    date: datetime,
) -> EmailMessage:
    """The alert as a multipart/alternative message (plain text first, then HTML)."""
    message = EmailMessage(policy=SEVEN_BIT)
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    # After the content: setting it clears every Content-* header.
    message["Message-ID"] = message_id
    message["Date"] = format_datetime(date)
    message["From"] = sender
    message["To"] = recipient
    message.set_raw("Subject", encoded_subject(email.subject))
    message["Content-Language"] = language
    # RFC 3834: an automatic message; out-of-office replies should not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    return message


def encoded_subject(subject: str) -> str:
    """The Subject as folded RFC 2047 encoded words, ready to write as is.

    Left to the email package, a non-ASCII subject folded across two encoded words loses the space
    between them (a reader sees "autoritățiașteaptă"); :class:`email.header.Header` keeps each space
    inside an encoded word and folds within 78 columns, so the value is written unchanged."""
    charset = "us-ascii" if subject.isascii() else "utf-8"
    return Header(subject, charset, header_name="Subject").encode(linesep="\n")


def envelope_sender(settings: Settings) -> str:
    """The address of IMI_SMTP_FROM (``IMI <no-reply@imi.localhost>`` gives the part in brackets)."""
    return parseaddr(settings.smtp_from)[1] or settings.smtp_from


def valid_address(address: str) -> bool:
    try:
        parsed = Address(addr_spec=address)
    except (ValueError, IndexError, TypeError):
        return False
    return bool(parsed.username and parsed.domain)


class Mailer:
    """A reused SMTP connection to IMI_SMTP_HOST:IMI_SMTP_PORT with IMI_SMTP_SECURITY and credentials."""

    def __init__(self, settings: Settings, on_connection: Callable[[bool], None] | None = None) -> None:
        self._settings = settings
        self._smtp: aiosmtplib.SMTP | None = None
        self._on_connection = on_connection or (lambda _up: None)
        self._last_used = time.monotonic()

    def _client(self) -> aiosmtplib.SMTP:
        settings = self._settings
        security = SmtpSecurity(settings.smtp_security)
        return aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            use_tls=security == SmtpSecurity.tls,
            start_tls=security == SmtpSecurity.starttls,  # "none" never upgrades, even if offered
            timeout=CONNECT_TIMEOUT,
        )

    async def _connection(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        await self.close()
        smtp = self._client()
        try:
            await smtp.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            self._on_connection(False)
            with contextlib.suppress(Exception):
                smtp.close()
            raise DeliveryError(
                f"SMTP server {self._settings.smtp_host}:{self._settings.smtp_port} unavailable: {_describe(exc)}",
                permanent=False,
                server_unreachable=True,
            ) from exc
        self._smtp = smtp
        self._on_connection(True)
        return smtp

    async def check(self) -> bool:
        """Open the connection now (at start, so the SMTP gauge and the logs tell at once)."""
        try:
            await self._connection()
        except DeliveryError as exc:
            log.warning("the SMTP server does not answer; mail will wait for it", error=str(exc))
            return False
        return True

    async def send(self, message: EmailMessage, recipient: str) -> None:
        """Send one message to one recipient; raise :class:`DeliveryError` when it was not accepted."""
        if not valid_address(recipient):
            raise DeliveryError(f"not a valid e-mail address: {recipient!r}", permanent=True)
        sender = envelope_sender(self._settings)
        for attempt in (1, 2):
            reused = self._smtp is not None and self._smtp.is_connected
            smtp = await self._connection()
            self._last_used = time.monotonic()
            try:
                await smtp.send_message(message, sender=sender, recipients=[recipient])
                return
            except aiosmtplib.SMTPRecipientsRefused as exc:
                codes = [refusal.code for refusal in exc.recipients]
                permanent = bool(codes) and all(code >= 500 for code in codes)
                detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
                raise DeliveryError(detail, permanent=permanent) from exc
            except aiosmtplib.SMTPResponseException as exc:
                closing = exc.code == 421  # the server is shutting the connection: all mail waits
                if closing:
                    await self.close()
                raise DeliveryError(
                    f"{exc.code} {exc.message}", permanent=exc.code >= 500, server_unreachable=closing
                ) from exc
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
                await self.close()
                if attempt == 1 and reused:
                    continue  # the kept connection had gone stale: open a new one once
                self._on_connection(False)
                raise DeliveryError(
                    f"connection to the SMTP server lost: {_describe(exc)}", permanent=False, server_unreachable=True
                ) from exc
            except (ValueError, aiosmtplib.SMTPNotSupported) as exc:
                raise DeliveryError(f"message not sendable: {_describe(exc)}", permanent=True) from exc

    async def close_if_idle(self, seconds: float) -> None:
        if self._smtp is not None and time.monotonic() - self._last_used > seconds:
            await self.close()

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        if smtp.is_connected:
            with contextlib.suppress(Exception):
                await smtp.quit()
        with contextlib.suppress(Exception):
            smtp.close()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
