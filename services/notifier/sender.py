"""The sender: the background task that hands queued deliveries to the SMTP server.

Exactly once, as far as SMTP allows (ARCHITECTURE.md, Side effects outside a database): a pass
first claims due rows in a transaction of their own (status ``sending`` with a claim token and a
lease), then sends each and marks it ``sent`` once the server has it, in a later transaction that
records every outcome ready by then (so the database is not a round trip per message). A sender
that dies between the two leaves the row ``sending``; when the lease runs out the row is claimed
and sent again with the same Message-ID (derived from event and recipient), so the duplicate is
recognisable. A redelivered event never gets here twice: the inbox and the unique Message-ID see
to that. A large pass goes out over a few SMTP connections at once, all at the one pace.

While the server is down or answers 4xx the mail waits and is tried again after a growing delay;
nothing is dropped. A 5xx refusal marks the delivery ``failed``, for ops to see and send again.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Update, and_, event, func, or_, select, update
from sqlalchemy.orm import Session

from services.notifier.deliveries import MAIL_QUEUED, render_delivery
from services.notifier.mailer import DeliveryError, compose
from services.notifier.models import Delivery, DeliveryStatus
from services.notifier.settings import NotifierSettings
from services.notifier.state import NotifierState, notifier
from shared.logging import get_logger
from shared.sealing import unseal
from shared.service import ServiceRuntime
from shared.waiting import wait_set

log = get_logger(__name__)

T = TypeVar("T")

CLAIM_BATCH = 100
# A large pass is sent over up to this many SMTP connections at once, one per this many messages
# (the pace still holds over all of them).
CONNECTIONS = 4
MESSAGES_PER_CONNECTION = 8
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


def claim_size(settings: NotifierSettings) -> int:
    """How many deliveries a pass claims: about a second's worth at IMI_NOTIFIER_SEND_RATE, so a
    claim is sent well within its lease, and at most :data:`CLAIM_BATCH`."""
    return max(1, min(CLAIM_BATCH, math.ceil(settings.send_rate)))


def parallel_sends(claimed: int) -> int:
    """Messages in flight at once (each over its own SMTP connection) for a pass of ``claimed``:
    one connection carries a trickle, a few share a large pass."""
    return max(1, min(CONNECTIONS, claimed // MESSAGES_PER_CONNECTION))


async def send_due(runtime: ServiceRuntime, limit: int | None = None) -> PassResult:
    """One pass: claim what is due, send it at the configured rate, record the outcomes.

    A service stopping meanwhile lets the messages in hand finish and be recorded, and gives the
    rest of its claim back at once, so a graceful stop neither doubles nor delays mail."""
    state = notifier(runtime)
    result = PassResult()
    claimed = await _uncancelled(claim_due(runtime, limit or claim_size(state.settings)))
    result.claimed = len(claimed)
    if claimed:
        await _Pass(runtime, state, claimed, result).run()
    await refresh_queue_gauge(runtime, state)
    return result


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed delivery: ``sent``, ``failed`` (for good) or ``queued`` again
    (to be tried at ``retry_at``)."""

    delivery: Claimed
    status: DeliveryStatus
    error: str | None = None
    retry_at: datetime | None = None


class _Pass:
    """The sending of one claim. Up to :func:`parallel_sends` workers take the deliveries in order,
    each waiting for the shared pace and sending over a connection of its own. Outcomes are recorded
    as a group commit: as soon as the server took a message a transaction records it, and what the
    server takes while that transaction runs goes into the next one, so under load one transaction
    records many messages while the window stays one commit long. Recording always follows the
    server's acceptance: a crash in between (a SIGKILL in that window) sends those few again, with
    the same Message-ID, once the claim's lease has run out; none is ever lost. At the end, or when
    the server cannot be reached, what was not sent is given back."""

    def __init__(self, runtime: ServiceRuntime, state: NotifierState, claimed: list[Claimed], result: PassResult):
        self.runtime = runtime
        self.state = state
        self.result = result
        self.workers = parallel_sends(len(claimed))
        self.waiting = deque(claimed)
        self.done: list[Outcome] = []
        self.recording: asyncio.Task[None] | None = None
        self.server_back_at: datetime | None = None  # set when the server could not be reached

    async def run(self) -> None:
        workers = [asyncio.ensure_future(self._worker()) for _ in range(self.workers)]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for worker in workers:
                worker.cancel()
            raise
        finally:
            await _uncancelled(self._settle(workers))

    async def _worker(self) -> None:
        while self.waiting and self.server_back_at is None:
            await self.state.pace()
            if not self.waiting or self.server_back_at is not None:
                return
            # In hand: sent to the end and kept for recording even if the service stops meanwhile.
            await _uncancelled(self._send_and_keep(self.waiting.popleft()))
            self._record_soon()

    def _record_soon(self) -> None:
        """Start recording now unless a recording runs (it takes what is done when it ends)."""
        if self.recording is not None and not self.recording.done():
            return
        if self.recording is not None:
            self.recording.result()  # a recording that failed stops the pass (database away)
        self.recording = asyncio.ensure_future(self._record_while_done())

    async def _record_while_done(self) -> None:
        while self.done:
            await self._record_done()

    async def _send_and_keep(self, delivery: Claimed) -> None:
        outcome = await self._send(delivery)
        self.done.append(outcome)  # after the await: the recorder swaps the list meanwhile

    async def _send(self, delivery: Claimed) -> Outcome:
        try:
            message = message_of(self.runtime, delivery)
        except Exception as exc:  # a delivery that cannot be written is a failure ops can see
            log.error("an alert could not be rendered", delivery_id=delivery.id, error=repr(exc))
            return Outcome(delivery, DeliveryStatus.failed, f"not renderable: {type(exc).__name__}: {exc}")
        try:
            await self.state.mailer.send(message, delivery.recipient)
        except DeliveryError as exc:
            self.result.errors.append(str(exc))
            if exc.permanent:
                return Outcome(delivery, DeliveryStatus.failed, str(exc))
            retry_at = self.runtime.clock.now() + self.state.settings.backoff(delivery.attempts + 1)
            if exc.server_unreachable and self.server_back_at is None:
                # The server is down: the rest wait with this one instead of each timing out on it.
                self.server_back_at = retry_at
            return Outcome(delivery, DeliveryStatus.queued, str(exc), retry_at)
        return Outcome(delivery, DeliveryStatus.sent)

    async def _record_done(self) -> None:
        outcomes, self.done = self.done, []
        if outcomes:
            await _record(self.runtime, self.state, outcomes, self.result)

    async def _settle(self, workers: list[asyncio.Task[None]]) -> None:
        await asyncio.wait(workers)  # the messages in hand finish
        try:
            if self.recording is not None:
                await self.recording
            await self._record_done()
        finally:
            rest, self.waiting = list(self.waiting), deque()
            if rest:
                self.result.released = await _release(
                    self.runtime, rest, self.server_back_at or self.runtime.clock.now()
                )


def message_of(runtime: ServiceRuntime, delivery: Claimed) -> bytes:
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
    """Run ``work`` to its end even if the caller is cancelled meanwhile, once or again (then
    re-raise the cancellation)."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise  # the work itself was cancelled
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


def _claimed_by(deliveries: list[Claimed]) -> dict[uuid.UUID, list[int]]:
    """Delivery ids by claim token: an outcome is recorded only where the claim still holds (no
    other pass took the row over after its lease ran out)."""
    ids: dict[uuid.UUID, list[int]] = {}
    for delivery in deliveries:
        ids.setdefault(delivery.claim, []).append(delivery.id)
    return ids


async def _record(runtime: ServiceRuntime, state: NotifierState, outcomes: list[Outcome], result: PassResult) -> None:
    """Record ``outcomes`` in one transaction: one statement for all the sent ones, one per other."""
    now = runtime.clock.now()
    sent = [outcome.delivery for outcome in outcomes if outcome.status == DeliveryStatus.sent]
    others = [outcome for outcome in outcomes if outcome.status != DeliveryStatus.sent]
    async with runtime.sessions() as session, session.begin():
        for claim, ids in _claimed_by(sent).items():
            # Rule S11: the sealed password goes with the sending; nothing of the e-mail is kept.
            await session.execute(
                _finished(ids, claim).values(
                    status=DeliveryStatus.sent,
                    sent_at=now,
                    attempts=Delivery.attempts + 1,
                    sealed_secret=None,
                    last_error=None,
                    next_attempt_at=None,
                )
            )
        for outcome in others:
            await session.execute(
                _finished([outcome.delivery.id], outcome.delivery.claim).values(
                    status=outcome.status,
                    attempts=outcome.delivery.attempts + 1,
                    last_error=(outcome.error or "")[:2000],
                    next_attempt_at=outcome.retry_at,
                )
            )
    result.sent += len(sent)
    state.metrics.sent.inc(len(sent))
    for outcome in others:
        delivery, error = outcome.delivery, (outcome.error or "")[:500]
        if outcome.status == DeliveryStatus.failed:
            result.failed += 1
            state.metrics.failed.inc()
            log.warning("an e-mail was refused for good", delivery_id=delivery.id, error=error)
        else:
            result.retried += 1
            state.metrics.retries.inc()
            attempts = delivery.attempts + 1
            log.info("an e-mail waits for another attempt", delivery_id=delivery.id, attempts=attempts, error=error)


def _finished(ids: list[int], claim: uuid.UUID) -> Update:
    return (
        update(Delivery)
        .where(Delivery.id.in_(ids), Delivery.claim == claim)
        .values(claim=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )


async def _release(runtime: ServiceRuntime, deliveries: list[Claimed], retry_at: datetime) -> int:
    """Give unsent deliveries back to the queue, due at ``retry_at``; how many were still ours."""
    released = 0
    async with runtime.sessions() as session, session.begin():
        for claim, ids in _claimed_by(deliveries).items():
            done = await session.execute(
                _finished(ids, claim).values(status=DeliveryStatus.queued, next_attempt_at=retry_at)
            )
            released += done.rowcount  # type: ignore[attr-defined]
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
            await state.mailer.close_if_idle(IDLE_CONNECTION)
            if result.claimed >= claim_size(state.settings) and not result.released:
                continue  # more may be due right now
            await wait_set(state.wake, IDLE_POLL)
    finally:
        event.remove(session_class, "after_commit", wake_after_commit)
        await state.mailer.close()
