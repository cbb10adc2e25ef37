"""The daily digest: users who chose it (``digest`` in their registry data) get no single request
alerts but one summary a day, at IMI_NOTIFIER_DIGEST_HOUR (UTC) on the service's clock, listing
each alert of the day with its link. A temporary password is never in a digest (rule S11).

A digest is itself a delivery, sent by the sender like any other. Its Message-ID is derived from
the user and the day, so two replicas composing at once make one e-mail, not two.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import select, update

from services.notifier.deliveries import MAIL_QUEUED, message_id_for
from services.notifier.models import Delivery, DeliveryStatus, KnownUser
from services.notifier.read_model import can_receive
from services.notifier.rendering import resolve_language
from services.notifier.state import notifier
from shared.logging import get_logger
from shared.service import ServiceRuntime

log = get_logger(__name__)

DIGEST_NAMESPACE = uuid.UUID("8b0f3d4e-6a55-4c1e-9a8e-2f1d7c6b5a40")
DIGEST_EVENT_TYPE = "notifier.digest"
# Seconds between looks at the clock for the digest hour.
DIGEST_CHECK_INTERVAL = 60.0


def latest_digest_moment(now: datetime, hour: int) -> datetime:
    """The last digest moment at or before ``now``: today at ``hour`` UTC, or yesterday's."""
    today = datetime.combine(now.astimezone(UTC).date(), time(hour), tzinfo=UTC)
    return today if now >= today else today - timedelta(days=1)


async def compose_digests(runtime: ServiceRuntime) -> int:
    """Queue one summary per digest user for the alerts held before the latest digest moment;
    return how many were queued. Alerts after that moment wait for the next day's."""
    state = notifier(runtime)
    cutoff = latest_digest_moment(runtime.clock.now(), state.settings.digest_hour)
    queued = 0
    async with runtime.messaging.transaction() as uow:
        session = uow.session
        user_ids = (
            await session.scalars(
                select(Delivery.user_id)
                .where(Delivery.status == DeliveryStatus.awaiting_digest, Delivery.created_at < cutoff)
                .distinct()
            )
        ).all()
        for user_id in user_ids:
            if user_id is None:
                continue
            items = (
                await session.scalars(
                    select(Delivery)
                    .where(
                        Delivery.user_id == user_id,
                        Delivery.status == DeliveryStatus.awaiting_digest,
                        Delivery.created_at < cutoff,
                    )
                    .order_by(Delivery.created_at, Delivery.id)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not items:
                continue
            user = await session.get(KnownUser, user_id)
            if user is None or not can_receive(user):
                for item in items:
                    item.status = DeliveryStatus.skipped
                    item.reason = "inactive_recipient" if user else "unknown_recipient"
                continue
            event_id = uuid.uuid5(DIGEST_NAMESPACE, f"{user_id}:{cutoff.isoformat()}")
            message_id = message_id_for(event_id, user.email)
            digest = await session.scalar(select(Delivery).where(Delivery.message_id == message_id))
            if digest is None:
                digest = Delivery(
                    event_id=event_id,
                    event_type=DIGEST_EVENT_TYPE,
                    kind="digest",
                    message_id=message_id,
                    recipient=user.email,
                    user_id=user.id,
                    authority_id=user.authority_id,
                    language=resolve_language(user.language),
                    status=DeliveryStatus.queued,
                    context={
                        "items": [
                            {"kind": item.kind, "request_reference": item.request_reference, "link": item.link}
                            for item in items
                        ]
                    },
                    link="/",
                    attempts=0,
                    created_at=runtime.clock.now(),
                    next_attempt_at=runtime.clock.now(),
                )
                session.add(digest)
                await session.flush()
                queued += 1
            await session.execute(
                update(Delivery)
                .where(Delivery.id.in_([item.id for item in items]))
                .values(status=DeliveryStatus.digested, digest_id=digest.id)
            )
        if queued:
            session.info[MAIL_QUEUED] = True
    if queued:
        state.metrics.digests.inc(queued)
        log.info("daily digests queued", count=queued)
    return queued


async def compose_digests_daily(runtime: ServiceRuntime) -> None:
    """The background task: look at the clock every minute and compose what is due."""
    while True:
        try:
            await compose_digests(runtime)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("composing digests failed; will retry", error=repr(exc))
        await asyncio.sleep(DIGEST_CHECK_INTERVAL)
