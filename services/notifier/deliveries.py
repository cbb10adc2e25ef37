"""Turning one event into delivery rows, inside the consumer's transaction.

Each alert goes to an :class:`Audience`: every address once, in its reader's language (a user's
preferred language, an authority address in the authority's language). Inactive and unknown
recipients are recorded as skipped. A row keeps the alert's kind, language and variables, settled
here, and the sender renders the e-mail from them when it sends it, so no body is ever stored; a
digest user's request alert waits for the daily summary instead; a temporary password is kept only
as the registry sealed it (rule S11). Nothing in a row names a user (rule S11) or a person
concerned by a request (rule P1).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import select

from services.notifier.models import Delivery, DeliveryStatus, KnownAuthority, KnownUser
from services.notifier.read_model import can_receive
from services.notifier.rendering import CONTEXT_KEYS, DIGEST_ITEM_KINDS, RenderedEmail, render_alert, resolve_language
from shared.events.envelope import Event
from shared.outbox import UnitOfWork

MESSAGE_ID_DOMAIN = "imi.notifier"

UNKNOWN_RECIPIENT = "unknown_recipient"
INACTIVE_RECIPIENT = "inactive_recipient"


def message_id_for(event_id: uuid.UUID, recipient: str) -> str:
    """The Message-ID of the alert of ``event_id`` to ``recipient``: the same on every retry."""
    digest = hashlib.sha256(f"{event_id}{recipient.strip().lower()}".encode()).hexdigest()[:32]
    return f"<{digest}@{MESSAGE_ID_DOMAIN}>"


@dataclass(frozen=True)
class Recipient:
    address: str
    language: str
    user_id: uuid.UUID | None = None
    authority_id: uuid.UUID | None = None
    digest: bool = False


@dataclass(frozen=True)
class Skipped:
    key: str  # "user:<id>" or "authority:<id>", for the row's Message-ID
    reason: str
    user_id: uuid.UUID | None = None
    authority_id: uuid.UUID | None = None


@dataclass
class Audience:
    """Who gets one alert: each address once (the first, most specific, reader wins), and who was
    left out and why."""

    recipients: dict[str, Recipient] = field(default_factory=dict)
    skipped: dict[str, Skipped] = field(default_factory=dict)

    def add_user(self, user_id: uuid.UUID | None, user: KnownUser | None) -> None:
        if user_id is None:
            return
        if user is None:
            self._skip(Skipped(f"user:{user_id}", UNKNOWN_RECIPIENT, user_id=user_id))
        elif not can_receive(user):
            self._skip(Skipped(f"user:{user_id}", INACTIVE_RECIPIENT, user_id=user_id, authority_id=user.authority_id))
        else:
            self._add(Recipient(user.email, user.language, user.id, user.authority_id, user.digest))

    def add_users(self, users: Iterable[KnownUser]) -> None:
        for user in users:
            self.add_user(user.id, user)

    def add_addresses(self, authority_id: uuid.UUID | None, authority: KnownAuthority | None) -> None:
        """The authority's own addresses, which receive its notifications (rule S1)."""
        if authority_id is None:
            return
        if authority is None:
            self._skip(Skipped(f"authority:{authority_id}", UNKNOWN_RECIPIENT, authority_id=authority_id))
            return
        if authority.status == "deactivated":
            self._skip(Skipped(f"authority:{authority_id}", INACTIVE_RECIPIENT, authority_id=authority_id))
            return
        for address in authority.emails:
            self._add(Recipient(address, authority.language, authority_id=authority.id))

    def skip_authority(self, authority_id: uuid.UUID | None) -> None:
        if authority_id is not None:
            self._skip(Skipped(f"authority:{authority_id}", UNKNOWN_RECIPIENT, authority_id=authority_id))

    def __bool__(self) -> bool:
        return bool(self.recipients)

    def _add(self, recipient: Recipient) -> None:
        self.recipients.setdefault(recipient.address.lower(), recipient)

    def _skip(self, skipped: Skipped) -> None:
        self.skipped.setdefault(skipped.key, skipped)


ContextOf = Callable[[str], dict[str, Any]]
"""The alert's variables for a reader of one language (rendering.CONTEXT_KEYS without ``link`` and
``temporary_password``, which the sender adds)."""

STORED_KEYS = CONTEXT_KEYS - {"link", "temporary_password", "items"}


@dataclass
class Alert:
    kind: str
    audience: Audience
    context: ContextOf
    link: str  # a front-end path such as /requests/<id>
    request_id: uuid.UUID | None = None
    request_reference: str | None = None
    sealed_secret: str | None = None  # a temporary password, sealed (rule S11)


def no_variables(_: str) -> dict[str, Any]:
    return {}


async def queue_alerts(uow: UnitOfWork, event: Event[Any], alerts: Iterable[Alert]) -> list[Delivery]:
    """One delivery row per recipient of ``event`` (the first alert naming an address wins)."""
    now = uow.clock.now()
    # The inbox already makes a redelivery a no-op; this holds even after its ids were pruned.
    done = set((await uow.session.scalars(select(Delivery.message_id).where(Delivery.event_id == event.id))).all())
    rows: dict[str, Delivery] = {}
    for alert in alerts:
        contexts: dict[str, dict[str, Any]] = {}
        for recipient in alert.audience.recipients.values():
            message_id = message_id_for(event.id, recipient.address)
            if message_id in rows or message_id in done:
                continue
            language = resolve_language(recipient.language)
            if language not in contexts:
                contexts[language] = _stored(alert.context(language))
            digested = recipient.digest and alert.kind in DIGEST_ITEM_KINDS
            rows[message_id] = Delivery(
                event_id=event.id,
                event_type=event.type,
                kind=alert.kind,
                message_id=message_id,
                recipient=recipient.address,
                user_id=recipient.user_id,
                authority_id=recipient.authority_id,
                language=language,
                status=DeliveryStatus.awaiting_digest if digested else DeliveryStatus.queued,
                context=contexts[language],
                sealed_secret=alert.sealed_secret,
                link=alert.link,
                request_id=alert.request_id,
                request_reference=alert.request_reference,
                attempts=0,
                created_at=now,
                next_attempt_at=None if digested else now,
            )
        for skipped in alert.audience.skipped.values():
            message_id = message_id_for(event.id, skipped.key)
            if message_id in rows or message_id in done:
                continue
            rows[message_id] = Delivery(
                event_id=event.id,
                event_type=event.type,
                kind=alert.kind,
                message_id=message_id,
                recipient=None,
                user_id=skipped.user_id,
                authority_id=skipped.authority_id,
                language="",
                status=DeliveryStatus.skipped,
                reason=skipped.reason,
                context={},
                request_id=alert.request_id,
                request_reference=alert.request_reference,
                attempts=0,
                created_at=now,
            )
    uow.session.add_all(rows.values())
    if any(row.status == DeliveryStatus.queued for row in rows.values()):
        uow.session.info[MAIL_QUEUED] = True
    return list(rows.values())


def _stored(context: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(context) - STORED_KEYS)
    if unknown:
        raise ValueError(f"not stored alert variables: {', '.join(unknown)} (rules P1, S11)")
    return {key: value.isoformat() if isinstance(value, date) else value for key, value in context.items()}


def render_delivery(
    kind: str,
    language: str,
    context: dict[str, Any],
    link: str | None,
    public_url: str,
    *,
    temporary_password: str | None = None,
) -> RenderedEmail:
    """The e-mail of a delivery, rendered now from its stored variables (the password, when given,
    is used for this rendering only)."""
    variables: dict[str, Any] = dict(context)
    if "reply_date" in variables:
        variables["reply_date"] = date.fromisoformat(variables["reply_date"])
    if "items" in variables:
        variables["items"] = [{**item, "link": absolute_link(public_url, item["link"])} for item in variables["items"]]
    variables["link"] = absolute_link(public_url, link or "/")
    if temporary_password is not None:
        variables["temporary_password"] = temporary_password
    return render_alert(kind, language, variables)


def absolute_link(public_url: str, path: str) -> str:
    return public_url.rstrip("/") + "/" + path.lstrip("/")


MAIL_QUEUED = "imi.notifier.mail_queued"
"""Set on a session that queued mail: after its commit the sender is woken (see sender.py)."""
