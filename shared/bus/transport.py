"""The broker seen from the bus: a small AMQP-shaped interface with two implementations,
RabbitMQ (:mod:`shared.bus.amqp`) and the in-process memory broker (:mod:`shared.bus.memory`).

Everything above this interface (retries, dead-lettering, inbox, outbox relay) is written once and
runs unchanged on both, which is what lets one contract test suite hold them to the same semantics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

DEFAULT_EXCHANGE = ""


class PublishError(RuntimeError):
    """The broker did not confirm a message: it may not have been stored, so the sender keeps it."""


class BrokerUnavailable(PublishError):
    """No connection to the broker right now."""


@dataclass(frozen=True)
class QueueSpec:
    """A durable queue. ``message_ttl_ms`` with a dead-letter target makes a delay queue."""

    name: str
    message_ttl_ms: int | None = None
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None


@dataclass(frozen=True)
class Binding:
    queue: str
    exchange: str
    routing_key: str


@dataclass(frozen=True)
class Topology:
    """What a transport declares, and declares again after every reconnect."""

    topic_exchanges: tuple[str, ...] = ()
    queues: tuple[QueueSpec, ...] = ()
    bindings: tuple[Binding, ...] = ()


class IncomingMessage(Protocol):
    body: bytes
    routing_key: str
    message_id: str | None
    headers: Mapping[str, Any]
    redelivered: bool

    async def ack(self) -> None: ...

    async def nack(self, *, requeue: bool) -> None: ...


MessageCallback = Callable[[IncomingMessage], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class BrowsedMessage:
    """A message as read by :meth:`Transport.browse`: nothing to settle."""

    body: bytes
    routing_key: str
    message_id: str | None
    headers: Mapping[str, Any]


@dataclass
class OutgoingMessage:
    body: bytes
    message_id: str
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str = "application/json"
    type: str | None = None


class Transport(ABC):
    """A connection to a broker that declares, publishes with confirms and consumes with manual acks."""

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @property
    @abstractmethod
    def consumer_count(self) -> int:
        """Consumers currently registered with the broker (readiness reports it)."""

    @abstractmethod
    async def start(self) -> None:
        """Begin connecting; keeps reconnecting in the background until :meth:`stop`."""

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def wait_connected(self, timeout: float) -> bool: ...

    @abstractmethod
    async def declare(self, topology: Topology) -> None:
        """Declare (idempotently) and remember, so the topology survives a broker restart."""

    @abstractmethod
    async def publish(self, exchange: str, routing_key: str, message: OutgoingMessage, *, mandatory: bool) -> None:
        """Publish persistently and wait for the broker's confirm; raise :class:`PublishError` otherwise.

        ``mandatory`` raises when no queue took the message (used for retry and dead-letter copies,
        which must land); events on the topic exchange are not mandatory: an event nobody consumes
        is simply not kept.
        """

    @abstractmethod
    async def consume(self, queue: str, callback: MessageCallback, *, prefetch: int) -> None:
        """Deliver the queue's messages to ``callback``, again after every reconnect."""

    @abstractmethod
    async def cancel_consumers(self) -> None:
        """Stop taking new messages and wait for callbacks in progress to finish."""

    @abstractmethod
    async def get(self, queue: str) -> IncomingMessage | None:
        """Take one message (unacknowledged) or None when the queue is empty."""

    @abstractmethod
    async def browse(self, queue: str, limit: int) -> list[BrowsedMessage]:
        """Read up to ``limit`` messages from the head of the queue and leave them all in place."""

    @abstractmethod
    async def message_count(self, queue: str) -> int:
        """Messages ready in the queue (not counting those delivered and unacknowledged)."""

    @abstractmethod
    async def delete_queue(self, queue: str) -> None: ...


def create_transport(url: str, *, publish_timeout: float = 10.0) -> Transport:
    """The transport for ``IMI_BROKER_URL``: ``amqp://``/``amqps://`` for RabbitMQ, ``memory://NAME``
    for the in-process broker (one per name in a process, so services run together share it)."""
    if url.startswith(("amqp://", "amqps://")):
        from shared.bus.amqp import AmqpTransport

        return AmqpTransport(url, publish_timeout=publish_timeout)
    if url.startswith("memory://"):
        from shared.bus.memory import MemoryTransport, memory_broker

        return MemoryTransport(memory_broker(url.removeprefix("memory://") or "default"))
    raise ValueError(f"unsupported broker URL {url!r}: use amqp://… or memory://")
