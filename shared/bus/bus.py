"""The event bus a service holds: publish envelopes, and consume its queue with retries and
dead-lettering. Written once over :class:`~shared.bus.transport.Transport`, so RabbitMQ and the
memory broker behave the same.

Handling a message: ``process`` runs (and commits) first, and only then is the message
acknowledged. When ``process`` raises, a copy goes to the next delay queue (confirmed) and only then
is the original acknowledged; after the last delay the copy goes to the dead-letter queue with the
error. A failure is never acknowledged without its copy stored, so nothing is lost; a crash between
the two steps means a second delivery, which the inbox turns into a no-op.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from shared.bus.topology import ServiceQueues
from shared.bus.transport import DEFAULT_EXCHANGE, BrowsedMessage, IncomingMessage, OutgoingMessage, Transport
from shared.events.envelope import Envelope
from shared.logging import get_logger

log = get_logger(__name__)

ATTEMPT_HEADER = "x-imi-attempt"
ERROR_HEADER = "x-imi-error"
FAILED_AT_HEADER = "x-imi-failed-at"
TYPE_HEADER = "x-imi-event-type"
CORRELATION_HEADER = "x-imi-correlation-id"

# Returns False when the event had been handled before (the inbox knew it), anything else otherwise.
Process = Callable[[Envelope], Awaitable[bool | None]]
OutcomeObserver = Callable[[str, str], None]


def envelope_message(envelope: Envelope) -> OutgoingMessage:
    return OutgoingMessage(
        body=envelope.model_dump_json().encode(),
        message_id=str(envelope.id),
        type=envelope.type,
        headers={TYPE_HEADER: envelope.type, CORRELATION_HEADER: envelope.correlation_id},
    )


class EventBus:
    def __init__(
        self,
        transport: Transport,
        queues: ServiceQueues,
        *,
        prefetch: int = 16,
        observe: OutcomeObserver | None = None,
    ) -> None:
        self.transport = transport
        self.queues = queues
        self._prefetch = prefetch
        self._observe = observe or (lambda _type, _outcome: None)
        self._process: Process | None = None

    async def start(self, connect_timeout: float = 5.0) -> None:
        """Connect (in the background if the broker is down) and declare the events exchange."""
        await self.transport.start()
        await self.transport.wait_connected(connect_timeout)
        await self.transport.declare(self.queues.exchange_topology())

    async def stop(self) -> None:
        await self.transport.stop()

    async def publish(self, envelope: Envelope) -> None:
        """Publish one event and wait for the broker's confirm (raises PublishError otherwise)."""
        await self.transport.publish(
            self.queues.events_exchange, envelope.type, envelope_message(envelope), mandatory=False
        )

    async def subscribe(self, event_types: set[str], process: Process) -> None:
        """Consume this service's queue, bound to exactly ``event_types``."""
        self._process = process
        await self.transport.declare(self.queues.consumer_topology(event_types))
        await self.transport.consume(self.queues.queue, self._on_message, prefetch=self._prefetch)

    async def stop_consuming(self) -> None:
        """Take no new messages; let the handlers in progress finish and acknowledge."""
        await self.transport.cancel_consumers()

    async def _on_message(self, message: IncomingMessage) -> None:
        assert self._process is not None
        attempt = int(message.headers.get(ATTEMPT_HEADER, 1))
        event_type = str(message.headers.get(TYPE_HEADER, message.routing_key))
        try:
            envelope = Envelope.model_validate_json(message.body)
        except ValidationError as exc:
            # A message no code can read will not get better with retries.
            await self._settle_failure(message, attempt=self.queues.max_attempts, error=f"malformed envelope: {exc}")
            self._observe(event_type, "dead_lettered")
            return
        try:
            result = await self._process(envelope)
        except Exception as exc:
            log.warning(
                "event handling failed",
                event_id=str(envelope.id),
                event_type=envelope.type,
                attempt=attempt,
                error=repr(exc),
            )
            outcome = await self._settle_failure(message, attempt=attempt, error=repr(exc))
            self._observe(envelope.type, outcome)
            return
        await self._ack(message)
        self._observe(envelope.type, "duplicate" if result is False else "handled")

    async def _settle_failure(self, message: IncomingMessage, *, attempt: int, error: str) -> str:
        headers: dict[str, Any] = dict(message.headers)
        headers[ERROR_HEADER] = error[:2000]
        headers[FAILED_AT_HEADER] = datetime.now(UTC).isoformat()
        headers.setdefault(TYPE_HEADER, message.routing_key)
        if attempt < self.queues.max_attempts:
            headers[ATTEMPT_HEADER] = attempt + 1
            target, outcome = self.queues.retry_queue(attempt), "retried"
        else:
            headers[ATTEMPT_HEADER] = attempt
            target, outcome = self.queues.dead_letter_queue, "dead_lettered"
        copy = OutgoingMessage(
            body=message.body, message_id=message.message_id or "", headers=headers, type=headers[TYPE_HEADER]
        )
        try:
            await self.transport.publish(DEFAULT_EXCHANGE, target, copy, mandatory=True)
        except Exception as exc:
            # The copy is not safe: hand the original back instead of acknowledging it.
            log.error("could not store failed event for retry; requeueing", error=repr(exc))
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return "requeued"
        await self._ack(message)
        if outcome == "dead_lettered":
            log.error("event dead-lettered", message_id=message.message_id, event_type=headers[TYPE_HEADER])
        return outcome

    @staticmethod
    async def _ack(message: IncomingMessage) -> None:
        try:
            await message.ack()
        except Exception as exc:
            # The channel went away after our commit: the broker will deliver again and the
            # inbox will recognise the event.
            log.warning("acknowledgement lost; expecting a redelivery", error=repr(exc))


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    event_type: str
    attempts: int
    error: str
    failed_at: str | None
    body: bytes


class DeadLetterQueue:
    """Ops' view of a service's dead-letter queue: list what is there, replay it into the service."""

    def __init__(self, transport: Transport, queues: ServiceQueues) -> None:
        self.transport = transport
        self.queues = queues

    async def list(self, limit: int = 100) -> list[DeadLetter]:
        """Look without taking: the messages stay in the dead-letter queue."""
        return [self._describe(m) for m in await self.transport.browse(self.queues.dead_letter_queue, limit)]

    async def replay(self, limit: int | None = None) -> int:
        """Send dead letters back to the service's queue for a fresh set of attempts."""
        replayed = 0
        while limit is None or replayed < limit:
            message = await self.transport.get(self.queues.dead_letter_queue)
            if message is None:
                break
            headers = {k: v for k, v in message.headers.items() if k not in (ERROR_HEADER, FAILED_AT_HEADER)}
            headers[ATTEMPT_HEADER] = 1
            copy = OutgoingMessage(body=message.body, message_id=message.message_id or "", headers=headers)
            try:
                await self.transport.publish(DEFAULT_EXCHANGE, self.queues.queue, copy, mandatory=True)
            except Exception:
                await message.nack(requeue=True)
                raise
            await message.ack()
            replayed += 1
        return replayed

    @staticmethod
    def _describe(message: BrowsedMessage) -> DeadLetter:
        headers = message.headers
        return DeadLetter(
            message_id=message.message_id,
            event_type=str(headers.get(TYPE_HEADER, message.routing_key)),
            attempts=int(headers.get(ATTEMPT_HEADER, 1)),
            error=str(headers.get(ERROR_HEADER, "rejected by the broker")),
            failed_at=str(headers[FAILED_AT_HEADER]) if FAILED_AT_HEADER in headers else None,
            body=message.body,
        )
