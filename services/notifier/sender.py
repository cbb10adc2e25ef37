"""The sender: the background task that hands queued deliveries to the SMTP server.

Exactly once, as far as SMTP allows (ARCHITECTURE.md, Side effects outside a database): a pass
first claims due rows in a transaction of their own (status ``sending`` with a claim token and a
lease), then sends each and marks it ``sent`` in another transaction. A sender that dies between
the two leaves the row ``sending``; when the lease runs out the row is claimed and sent again with
the same Message-ID (derived from event and recipient), so the duplicate is recognisable. A
redelivered event never gets here twice: the inbox and the unique Message-ID see to that.

While the server is down or answers 4xx the mail waits and is tried again after a growing delay;
nothing is dropped. A 5xx refusal marks the delivery ``failed``, for ops to see and send again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, TypeVar

from sqlalchemy import and_, event, func, or_, select, update
from sqlalchemy.orm import Session

from services.notifier.deliveries import MAIL_QUEUED, render_delivery
from services.notifier.mailer import DeliveryError, compose
from services.notifier.models import Delivery, DeliveryStatus
from services.notifier.state import NotifierState, notifier
from shared.logging import get_logger
from shared.sealing import unseal
from shared.service import ServiceRuntime
from shared.waiting import wait_set

log = get_logger(__name__)

T = TypeVar("T")

CLAIM_BATCH = 20
# A claimed row is taken over by another pass only after this long (a sender that died mid-send).
CLAIM_LEASE = timedelta(minutes=10)
# Seconds between looks for due mail when no commit woke the sender.
IDLE_POLL = 5.0
# An SMTP connection unused this many seconds is closed (servers drop idle ones anyway).
IDLE_CONNECTION = 30.0
WAITING = (DeliveryStatus.queued, DeliveryStatus.sending)


@dataclass(frozen=True)
class Claimed:
    """A delivery this pass holds: its claim token and what sending it needs."""

    id: int
    claim: uuid.UUID
    kind: str
    language: str
    recipient: str
    message_id: str
    context: dict[str, Any]
    link: str | None
    sealed_secret: str | None
    attempts: int


@dataclass
class PassResult:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    released: int = 0
    errors: list[str] = field(default_factory=list)


async def claim_due(runtime: ServiceRuntime, limit: int = CLAIM_BATCH) -> list[Claimed]:
    """Claim up to ``limit`` deliveries due now (queued and due, or claimed by a sender whose lease
    ran out), in a transaction of their own; replicas skip each other's rows."""
    now = runtime.clock.now()
    token = uuid.uuid4()
    async with runtime.sessions() as session, session.begin():
        rows = (
            await session.scalars(
                select(Delivery)
                .where(
                    or_(
                        and_(Delivery.status == DeliveryStatus.queued, Delivery.next_attempt_at <= now),
                        and_(Delivery.status == DeliveryStatus.sending, Delivery.claimed_until < now),
                    )
                )
                .order_by(Delivery.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        claimed = []
        for row in rows:
            row.status = DeliveryStatus.sending
            row.claim = token
            row.claimed_until = now + CLAIM_LEASE
            claimed.append(
                Claimed(
                    id=row.id,
                    claim=token,
                    kind=row.kind,
                    language=row.language,
                    recipient=row.recipient or "",
                    message_id=row.message_id,
                    context=dict(row.context),
                    link=row.link,
                    sealed_secret=row.sealed_secret,
                    attempts=row.attempts,
                )
            )
    return claimed


async def send_due(runtime: ServiceRuntime, limit: int = CLAIM_BATCH) -> PassResult:
    """One pass: claim what is due, send it at the configured rate, record each outcome.

    A service stopping meanwhile lets the message in hand finish and be recorded, and gives the
    rest of its claim back at once, so a graceful stop neither doubles nor delays mail."""
    state = notifier(runtime)
    result = PassResult()
    claimed = await _uncancelled(claim_due(runtime, limit))
    result.claimed = len(claimed)
    for index, delivery in enumerate(claimed):
        in_hand = False
        try:
            await state.pace()
            in_hand = True
            retry_at = await _uncancelled(_send_one(runtime, state, delivery, result))
        except asyncio.CancelledError:
            rest = claimed[index + 1 :] if in_hand else claimed[index:]
            await _uncancelled(_release(runtime, rest, runtime.clock.now()))
            raise
        if retry_at is not None:
            # The server is down: the rest wait with this one instead of each timing out on it.
            result.released = await _release(runtime, claimed[index + 1 :], retry_at)
            break
    await refresh_queue_gauge(runtime, state)
    return result


async def _send_one(
    runtime: ServiceRuntime, state: NotifierState, delivery: Claimed, result: PassResult
) -> datetime | None:
    """Send and record one delivery; the time to try again when the server could not be reached."""
    try:
        message = message_of(runtime, delivery)
    except Exception as exc:  # a delivery that cannot be written is a failure ops can see
        log.error("an alert could not be rendered", delivery_id=delivery.id, error=repr(exc))
        await _record_failure(runtime, state, delivery, f"not renderable: {type(exc).__name__}: {exc}")
        result.failed += 1
        return None
    try:
        await state.mailer.send(message, delivery.recipient)
    except DeliveryError as exc:
        result.errors.append(str(exc))
        if exc.permanent:
            await _record_failure(runtime, state, delivery, str(exc))
            result.failed += 1
            return None
        retry_at = await _record_retry(runtime, state, delivery, str(exc))
        result.retried += 1
        return retry_at if exc.server_unreachable else None
    await _record_sent(runtime, state, delivery)
    result.sent += 1
    return None


def message_of(runtime: ServiceRuntime, delivery: Claimed) -> EmailMessage:
    """The e-mail of a claimed delivery, rendered now (a temporary password is opened for it alone)."""
    settings = runtime.settings
    password = unseal(settings, delivery.sealed_secret) if delivery.sealed_secret else None
    email = render_delivery(
        delivery.kind,
        delivery.language,
        delivery.context,
        delivery.link,
        settings.public_url,
        temporary_password=password,
    )
    del password  # rule S11: used for this e-mail only, never stored or logged
    return compose(
        email,
        sender=settings.smtp_from,
        recipient=delivery.recipient,
        message_id=delivery.message_id,
        language=delivery.language,
        date=runtime.clock.now(),
    )


async def _uncancelled(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to its end even if the caller is cancelled meanwhile (then re-raise)."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


async def _finish(runtime: ServiceRuntime, delivery: Claimed, **values: Any) -> bool:
    """Record the outcome, unless another pass took the row over meanwhile (its lease ran out)."""
    async with runtime.sessions() as session, session.begin():
        done = await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery.id, Delivery.claim == delivery.claim)
            .values(claim=None, claimed_until=None, **values)
        )
    return bool(done.rowcount)  # type: ignore[attr-defined]


async def _record_sent(runtime: ServiceRuntime, state: NotifierState, delivery: Claimed) -> None:
    # Rule S11: the sealed password goes with the sending; nothing of the e-mail is kept.
    await _finish(
        runtime,
        delivery,
        status=DeliveryStatus.sent,
        sent_at=runtime.clock.now(),
        attempts=delivery.attempts + 1,
        sealed_secret=None,
        last_error=None,
        next_attempt_at=None,
    )
    state.metrics.sent.inc()


async def _record_failure(runtime: ServiceRuntime, state: NotifierState, delivery: Claimed, error: str) -> None:
    await _finish(
        runtime,
        delivery,
        status=DeliveryStatus.failed,
        attempts=delivery.attempts + 1,
        last_error=error[:2000],
        next_attempt_at=None,
    )
    state.metrics.failed.inc()
    log.warning("an e-mail was refused for good", delivery_id=delivery.id, error=error[:500])


async def _record_retry(runtime: ServiceRuntime, state: NotifierState, delivery: Claimed, error: str) -> datetime:
    attempts = delivery.attempts + 1
    retry_at = runtime.clock.now() + state.settings.backoff(attempts)
    await _finish(
        runtime,
        delivery,
        status=DeliveryStatus.queued,
        attempts=attempts,
        last_error=error[:2000],
        next_attempt_at=retry_at,
    )
    state.metrics.retries.inc()
    log.info("an e-mail waits for another attempt", delivery_id=delivery.id, attempts=attempts, error=error[:500])
    return retry_at


async def _release(runtime: ServiceRuntime, deliveries: list[Claimed], retry_at: datetime) -> int:
    released = 0
    for delivery in deliveries:
        if await _finish(runtime, delivery, status=DeliveryStatus.queued, next_attempt_at=retry_at):
            released += 1
    return released


async def refresh_queue_gauge(runtime: ServiceRuntime, state: NotifierState | None = None) -> int:
    state = state or notifier(runtime)
    async with runtime.sessions() as session:
        waiting = int(
            await session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status.in_(WAITING))) or 0
        )
    state.metrics.queued.set(waiting)
    return waiting


async def deliver_mail(runtime: ServiceRuntime) -> None:
    """The background task: send what is due, then wait for a commit that queued mail (or the next
    poll), for as long as the service runs."""
    state = notifier(runtime)
    session_class = runtime.sessions.kw["sync_session_class"]

    def wake_after_commit(session: Session) -> None:
        if session.info.pop(MAIL_QUEUED, False):
            state.wake.set()

    event.listen(session_class, "after_commit", wake_after_commit)
    try:
        await state.mailer.check()
        while True:
            state.wake.clear()
            try:
                result = await send_due(runtime)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sender pass failed; will retry", error=repr(exc))
                result = PassResult()
            if result.claimed == CLAIM_BATCH and not result.released:
                continue  # more may be due right now
            if not result.claimed:
                await state.mailer.close_if_idle(IDLE_CONNECTION)
            await wait_set(state.wake, IDLE_POLL)
    finally:
        event.remove(session_class, "after_commit", wake_after_commit)
        await state.mailer.close()
