"""The SMTP side: writing an alert as the RFC 5322 message the server receives and handing it to the
mail server with aiosmtplib.

Connections are kept and reused across messages: one for each message in flight at once (the sender
sends over a few in parallel when much is due). A connection the server dropped is opened again once
before a message counts as not sent. What went wrong is classified for the sender: the server
cannot be reached (all mail waits), it answered 4xx (this message waits) or it answered 5xx (this
message is refused for good)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.policy
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from email.header import Header
from email.headerregistry import Address
from email.utils import format_datetime, parseaddr
from functools import lru_cache

import aiosmtplib

from services.notifier.rendering import RenderedEmail
from shared.logging import get_logger
from shared.settings import Settings, SmtpSecurity

log = get_logger(__name__)

CONNECT_TIMEOUT = 30.0
# RFC 5322: lines of at most 78 characters are written as they are; longer ones are encoded.
MAX_LINE = 78
# Bytes of UTF-8 in one encoded word of the Subject: "=?utf-8?b?" + 60 characters of base64 + "?="
# is 72 columns, after the space that starts a folded line; the first word follows "Subject: ".
SUBJECT_WORD = 45
SUBJECT_FIRST_WORD = 42


def compose(
    email: RenderedEmail,
    *,
    sender: str,
    recipient: str,
    message_id: str,
    language: str,
    date: datetime,
) -> bytes:
    """The alert as a multipart/alternative message (plain text first, then HTML), written out as
    the SMTP server receives it: CRLF line ends, headers folded within 78 columns, each body 7-bit
    (as is, quoted-printable or base64, whichever is shortest), so any server takes it.

    Written directly rather than through :class:`email.message.EmailMessage`, whose header parsing
    cost more than the SMTP exchange itself (bench/findings/notifier.md); the tests read every
    alert back with the email package. Raises ``ValueError`` for a header value with a line break."""
    for value in (recipient, message_id, language):
        if "\r" in value or "\n" in value:
            raise ValueError("Header values may not contain linefeed or carriage return characters")
    boundary = f"=_{uuid.uuid4().hex}"  # "=_" occurs in neither quoted-printable nor base64
    head = (
        f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'
        "MIME-Version: 1.0\r\n"
        f"Message-ID: {message_id}\r\n"
        f"Date: {format_datetime(date)}\r\n"
        f"{_from_header(sender)}"
        f"To: {recipient}\r\n"
        f"Subject: {encoded_subject(email.subject).replace(chr(10), chr(13) + chr(10))}\r\n"
        f"Content-Language: {language}\r\n"
        # RFC 3834: an automatic message; out-of-office replies should not answer it.
        "Auto-Submitted: auto-generated\r\n"
        "X-Auto-Response-Suppress: All\r\n"
        "\r\n"
    )
    # RFC 2046: the line break before a delimiter belongs to it, not to the part's body.
    return b"".join(
        (
            head.encode(),  # non-ASCII only in a non-ASCII recipient, sent with SMTPUTF8
            f"--{boundary}\r\n".encode(),
            _text_part("plain", email.text),
            f"\r\n--{boundary}\r\n".encode(),
            _text_part("html", email.html),
            f"\r\n--{boundary}--\r\n".encode(),
        )
    )


def _text_part(subtype: str, text: str) -> bytes:
    lines = text.encode("utf-8").splitlines()
    body = b"\r\n".join(lines) + b"\r\n"
    if body.isascii() and all(len(line) <= MAX_LINE for line in lines):
        encoding, encoded = "7bit", body
    else:
        quoted = binascii.b2a_qp(body, istext=True)
        encoded = base64.encodebytes(body).replace(b"\n", b"\r\n")
        encoding, encoded = ("base64", encoded) if len(quoted) > len(encoded) else ("quoted-printable", quoted)
    header = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n'
    return header.encode() + encoded


@lru_cache(maxsize=16)
def _from_header(sender: str) -> str:
    """The From header of IMI_SMTP_FROM, encoded and folded once (a display name may be non-ASCII)."""
    return email.policy.SMTP.fold("From", sender)


def encoded_subject(subject: str) -> str:
    """The Subject as folded RFC 2047 encoded words, ready to write as is (lines joined by ``\n``).

    Every character, spaces included, is inside an encoded word: a reader drops the white space
    between two words, so a space left outside them vanishes (a reader would see
    "autoritățiașteaptă"). Each word holds whole characters of at most 45 bytes of UTF-8 in base64
    (42 on the first line, after ``Subject: ``), so every line keeps within 78 columns. Written here
    rather than with :class:`email.header.Header`, which took most of the time of writing a message."""
    if subject.isascii():
        return Header(subject, "us-ascii", header_name="Subject").encode(linesep="\n")
    words: list[bytes] = []
    word = bytearray()
    budget = SUBJECT_FIRST_WORD
    for character in subject:
        encoded = character.encode()
        if len(word) + len(encoded) > budget:
            words.append(bytes(word))
            word.clear()
            budget = SUBJECT_WORD
        word += encoded
    words.append(bytes(word))
    return "\n ".join(f"=?utf-8?b?{base64.b64encode(chunk).decode()}?=" for chunk in words)


def envelope_sender(settings: Settings) -> str:
    """The address of IMI_SMTP_FROM (``IMI <no-reply@imi.localhost>`` gives the part in brackets)."""
    return _address_of(settings.smtp_from)


@lru_cache(maxsize=16)
def _address_of(sender: str) -> str:
    return parseaddr(sender)[1] or sender


@lru_cache(maxsize=4096)  # the same handlers' and authorities' addresses come again and again
def valid_address(address: str) -> bool:
    try:
        parsed = Address(addr_spec=address)
    except (ValueError, IndexError, TypeError):
        return False
    return bool(parsed.username and parsed.domain)


class DeliveryError(Exception):
    """A message was not sent. ``permanent``: the server refused it for good (5xx)."""

    def __init__(self, message: str, *, permanent: bool, server_unreachable: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.server_unreachable = server_unreachable


class _Connection:
    """One SMTP connection and when it last carried a message."""

    def __init__(self, smtp: aiosmtplib.SMTP) -> None:
        self.smtp = smtp
        self.last_used = time.monotonic()


class Mailer:
    """Reused SMTP connections to IMI_SMTP_HOST:IMI_SMTP_PORT with IMI_SMTP_SECURITY and credentials:
    a message takes an idle one, or opens one when none is idle, so as many are open as messages
    were ever in flight at once (the sender bounds that)."""

    def __init__(self, settings: Settings, on_connection: Callable[[bool], None] | None = None) -> None:
        self._settings = settings
        self._idle: list[_Connection] = []  # most recently used last
        self._busy: set[_Connection] = set()
        self._on_connection = on_connection or (lambda _up: None)

    @property
    def open_connections(self) -> int:
        return len(self._idle) + len(self._busy)

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
            cert_bundle=str(settings.smtp_ca_file) if settings.smtp_ca_file is not None else None,
            timeout=CONNECT_TIMEOUT,
        )

    async def _open(self) -> _Connection:
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
        self._on_connection(True)
        return _Connection(smtp)

    async def _take(self) -> tuple[_Connection, bool]:
        """A connection for one message, and whether it was kept from an earlier one."""
        while self._idle:
            connection = self._idle.pop()
            if connection.smtp.is_connected:
                self._busy.add(connection)
                return connection, True
            await _quit(connection.smtp)
        connection = await self._open()
        self._busy.add(connection)
        return connection, False

    def _give_back(self, connection: _Connection) -> None:
        self._busy.discard(connection)
        connection.last_used = time.monotonic()
        if connection.smtp.is_connected:
            self._idle.append(connection)

    async def check(self) -> bool:
        """Open a connection now (at start, so the SMTP gauge and the logs tell at once)."""
        try:
            connection, _ = await self._take()
        except DeliveryError as exc:
            log.warning("the SMTP server does not answer; mail will wait for it", error=str(exc))
            return False
        self._give_back(connection)
        return True

    async def send(self, message: bytes, recipient: str) -> None:
        """Send one message (as :func:`compose` writes it) to one recipient; raise
        :class:`DeliveryError` when it was not accepted."""
        if not valid_address(recipient):
            raise DeliveryError(f"not a valid e-mail address: {recipient!r}", permanent=True)
        sender = envelope_sender(self._settings)
        # RFC 6531: an address beyond ASCII needs a server that takes SMTPUTF8.
        options = [] if sender.isascii() and recipient.isascii() else ["SMTPUTF8"]
        for attempt in (1, 2):
            connection, reused = await self._take()
            try:
                await connection.smtp.sendmail(sender, [recipient], message, mail_options=options)
                return
            except aiosmtplib.SMTPRecipientsRefused as exc:
                codes = [refusal.code for refusal in exc.recipients]
                permanent = bool(codes) and all(code >= 500 for code in codes)
                detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
                raise DeliveryError(detail, permanent=permanent) from exc
            except aiosmtplib.SMTPResponseException as exc:
                closing = exc.code == 421  # the server is shutting the connection: all mail waits
                if closing:
                    await _quit(connection.smtp)
                raise DeliveryError(
                    f"{exc.code} {exc.message}", permanent=exc.code >= 500, server_unreachable=closing
                ) from exc
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
                await _quit(connection.smtp)
                if attempt == 1 and reused:
                    continue  # the kept connection had gone stale: open a new one once
                self._on_connection(False)
                raise DeliveryError(
                    f"connection to the SMTP server lost: {_describe(exc)}", permanent=False, server_unreachable=True
                ) from exc
            except (ValueError, aiosmtplib.SMTPNotSupported) as exc:
                raise DeliveryError(f"message not sendable: {_describe(exc)}", permanent=True) from exc
            finally:
                self._give_back(connection)

    async def close_if_idle(self, seconds: float) -> None:
        """Close the connections unused for ``seconds`` (servers drop idle ones anyway)."""
        now = time.monotonic()
        stale = [connection for connection in self._idle if now - connection.last_used > seconds]
        self._idle = [connection for connection in self._idle if connection not in stale]
        for connection in stale:
            await _quit(connection.smtp)

    async def close(self) -> None:
        connections, self._idle = self._idle, []
        connections.extend(self._busy)
        self._busy.clear()
        for connection in connections:
            await _quit(connection.smtp)


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    if smtp.is_connected:
        with contextlib.suppress(Exception):
            await smtp.quit()
    with contextlib.suppress(Exception):
        smtp.close()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
