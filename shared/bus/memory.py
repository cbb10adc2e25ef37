"""An in-process broker for the embedded default (``IMI_BROKER_URL=memory://``).

It keeps the RabbitMQ semantics the bus relies on: topic and default-exchange routing, durable
queues that outlive consumers, prefetch, manual ack and nack, redelivery of unacknowledged messages
when a consumer goes away, per-queue message TTL and dead-lettering. It can be stopped and started
like a broker node so the same fault tests run against it and against RabbitMQ.

It lives in memory: messages still queued when the process exits are gone. The outbox keeps every
event until it is published, so the embedded broker loses only in-flight deliveries of a process
that is killed; production runs on RabbitMQ.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from shared.bus.transport import (
    DEFAULT_EXCHANGE,
    BrokerUnavailable,
    BrowsedMessage,
    IncomingMessage,
    MessageCallback,
    OutgoingMessage,
    PublishError,
    QueueSpec,
    Topology,
    Transport,
)
from shared.waiting import wait_set


class ChannelClosed(RuntimeError):
    """Acknowledging a delivery whose consumer the broker already dropped (as RabbitMQ would refuse)."""


@dataclass(frozen=True)
class _Message:
    body: bytes
    routing_key: str
    message_id: str | None
    headers: Mapping[str, Any]
    content_type: str | None = None
    type: str | None = None
    redelivered: bool = False


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: ``*`` is exactly one word, ``#`` is zero or more words."""
    words, keys = pattern.split("."), routing_key.split(".")

    def match(i: int, j: int) -> bool:
        if i == len(words):
            return j == len(keys)
        if words[i] == "#":
            return any(match(i + 1, rest) for rest in range(j, len(keys) + 1))
        if j == len(keys):
            return False
        return words[i] in ("*", keys[j]) and match(i + 1, j + 1)

    return match(0, 0)


class _Delivery:
    """One message handed to a consumer (or to ``get``) and not yet settled."""

    def __init__(self, message: _Message, queue: _Queue, consumer: _Consumer | None) -> None:
        self._message = message
        self._queue = queue
        self._consumer = consumer
        self._settled = False
        self.body = message.body
        self.routing_key = message.routing_key
        self.message_id = message.message_id
        self.headers = message.headers
        self.redelivered = message.redelivered

    def _settle(self) -> None:
        if self._settled:
            raise RuntimeError("delivery already acknowledged or rejected")
        if self._consumer is not None and self._consumer.closed:
            raise ChannelClosed("the consumer of this delivery is gone; the broker has requeued it")
        self._settled = True
        if self._consumer is not None:
            self._consumer.unacked.discard(self)
        else:
            self._queue.pending_gets.discard(self)

    async def ack(self) -> None:
        self._settle()
        self._queue.dispatch()

    async def nack(self, *, requeue: bool) -> None:
        self._settle()
        if requeue:
            self._queue.put(replace(self._message, redelivered=True), front=True)
        else:
            self._queue.dead_letter(self._message)
        self._queue.dispatch()


@dataclass(eq=False)
class _Consumer:
    queue: _Queue
    callback: MessageCallback
    prefetch: int
    unacked: set[_Delivery] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    active: bool = True  # receives new deliveries
    closed: bool = False  # its channel is gone: settling is refused

    @property
    def has_capacity(self) -> bool:
        return self.active and not self.closed and len(self.unacked) < self.prefetch

    def deliver(self, message: _Message) -> None:
        delivery = _Delivery(message, self.queue, self)
        self.unacked.add(delivery)
        task = asyncio.get_running_loop().create_task(self.callback(delivery))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def drop(self) -> None:
        """What a broker does when a consumer's channel closes: requeue what it had not settled."""
        self.active = False
        self.closed = True
        if self in self.queue.consumers:
            self.queue.consumers.remove(self)
        for delivery in sorted(self.unacked, key=id, reverse=True):
            self.queue.put(replace(delivery._message, redelivered=True), front=True)
        self.unacked.clear()
        self.queue.dispatch()


class _Queue:
    def __init__(self, broker: MemoryBroker, spec: QueueSpec) -> None:
        self.broker = broker
        self.spec = spec
        self.ready: deque[_Message] = deque()
        self.consumers: list[_Consumer] = []
        self.pending_gets: set[_Delivery] = set()
        self._next_consumer = 0

    def put(self, message: _Message, *, front: bool = False) -> None:
        if front:
            self.ready.appendleft(message)
        else:
            self.ready.append(message)
        if self.spec.message_ttl_ms is not None:
            asyncio.get_running_loop().call_later(self.spec.message_ttl_ms / 1000, self._expire, message)
        self.dispatch()

    def _expire(self, message: _Message) -> None:
        for index, queued in enumerate(self.ready):
            if queued is message:
                del self.ready[index]
                self.dead_letter(message)
                return

    def dead_letter(self, message: _Message) -> None:
        if self.spec.dead_letter_exchange is None:
            return
        routing_key = self.spec.dead_letter_routing_key or message.routing_key
        self.broker.route(
            self.spec.dead_letter_exchange, routing_key, replace(message, routing_key=routing_key, redelivered=False)
        )

    def dispatch(self) -> None:
        if not self.broker.running:
            return
        while self.ready and self.consumers:
            available = [c for c in self.consumers if c.has_capacity]
            if not available:
                return
            consumer = available[self._next_consumer % len(available)]
            self._next_consumer += 1
            consumer.deliver(self.ready.popleft())


class MemoryBroker:
    """The broker node. Several transports (one per service) may share one in a process."""

    def __init__(self) -> None:
        self.running = True
        self.queues: dict[str, _Queue] = {}
        self.bindings: dict[str, set[tuple[str, str]]] = {}  # topic exchange -> {(pattern, queue)}
        self.transports: set[MemoryTransport] = set()

    def declare(self, topology: Topology) -> None:
        for exchange in topology.topic_exchanges:
            self.bindings.setdefault(exchange, set())
        for spec in topology.queues:
            if spec.name not in self.queues:
                self.queues[spec.name] = _Queue(self, spec)
        for binding in topology.bindings:
            if binding.exchange not in self.bindings:
                raise PublishError(f"no exchange {binding.exchange!r} to bind {binding.queue!r} to")
            self.bindings[binding.exchange].add((binding.routing_key, binding.queue))

    def route(self, exchange: str, routing_key: str, message: _Message) -> int:
        if exchange == DEFAULT_EXCHANGE:
            targets = [routing_key] if routing_key in self.queues else []
        elif exchange in self.bindings:
            targets = sorted({q for pattern, q in self.bindings[exchange] if topic_matches(pattern, routing_key)})
        else:
            raise PublishError(f"no exchange {exchange!r}")
        for name in targets:
            self.queues[name].put(replace(message, routing_key=routing_key))
        return len(targets)

    async def stop(self) -> None:
        """Go down like a node: every consumer is dropped and its unsettled messages requeued."""
        self.running = False
        for queue in self.queues.values():
            for consumer in list(queue.consumers):
                consumer.drop()
        for transport in self.transports:
            transport._on_broker_stopped()

    async def start(self) -> None:
        """Come back: queues kept their messages; transports register their consumers again."""
        self.running = True
        for transport in list(self.transports):
            await transport._on_broker_started()


_brokers: dict[str, MemoryBroker] = {}


def memory_broker(name: str = "default") -> MemoryBroker:
    """The process-wide broker called ``name`` (``memory://name``)."""
    if name not in _brokers:
        _brokers[name] = MemoryBroker()
    return _brokers[name]


class MemoryTransport(Transport):
    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self._started = False
        self._consumers: list[_Consumer] = []
        self._registrations: list[tuple[str, MessageCallback, int]] = []
        self._connected_event = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._started and self.broker.running

    @property
    def consumer_count(self) -> int:
        return sum(1 for c in self._consumers if c.active) if self.connected else 0

    async def start(self) -> None:
        self._started = True
        self.broker.transports.add(self)
        if self.broker.running:
            self._connected_event.set()

    async def stop(self) -> None:
        await self.cancel_consumers()
        self._started = False
        self._connected_event.clear()
        self.broker.transports.discard(self)

    async def wait_connected(self, timeout: float) -> bool:
        await wait_set(self._connected_event, timeout)
        return self.connected

    def _require_connection(self) -> None:
        if not self.connected:
            raise BrokerUnavailable("the memory broker is not running")

    async def declare(self, topology: Topology) -> None:
        self._require_connection()
        self.broker.declare(topology)

    async def publish(self, exchange: str, routing_key: str, message: OutgoingMessage, *, mandatory: bool) -> None:
        self._require_connection()
        stored = _Message(
            body=message.body,
            routing_key=routing_key,
            message_id=message.message_id,
            headers=dict(message.headers),
            content_type=message.content_type,
            type=message.type,
        )
        routed = self.broker.route(exchange, routing_key, stored)
        if mandatory and routed == 0:
            raise PublishError(f"no queue took {routing_key!r} on exchange {exchange!r}")

    async def consume(self, queue: str, callback: MessageCallback, *, prefetch: int) -> None:
        self._registrations.append((queue, callback, prefetch))
        if self.connected:
            self._register(queue, callback, prefetch)

    def _register(self, queue: str, callback: MessageCallback, prefetch: int) -> None:
        target = self.broker.queues.get(queue)
        if target is None:
            raise PublishError(f"no queue {queue!r} to consume from")
        consumer = _Consumer(target, callback, prefetch)
        target.consumers.append(consumer)
        self._consumers.append(consumer)
        target.dispatch()

    async def cancel_consumers(self) -> None:
        self._registrations.clear()
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            consumer.active = False
            if consumer in consumer.queue.consumers:
                consumer.queue.consumers.remove(consumer)
        in_flight = [task for consumer in consumers for task in consumer.tasks]
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
        for consumer in consumers:
            consumer.drop()

    def _on_broker_stopped(self) -> None:
        self._consumers = [c for c in self._consumers if not c.closed]
        self._connected_event.clear()

    async def _on_broker_started(self) -> None:
        if not self._started:
            return
        self._connected_event.set()
        for queue, callback, prefetch in self._registrations:
            self._register(queue, callback, prefetch)

    async def get(self, queue: str) -> IncomingMessage | None:
        self._require_connection()
        target = self.broker.queues.get(queue)
        if target is None or not target.ready:
            return None
        delivery = _Delivery(target.ready.popleft(), target, None)
        target.pending_gets.add(delivery)
        return delivery

    async def browse(self, queue: str, limit: int) -> list[BrowsedMessage]:
        self._require_connection()
        target = self.broker.queues.get(queue)
        if target is None:
            return []
        return [
            BrowsedMessage(body=m.body, routing_key=m.routing_key, message_id=m.message_id, headers=m.headers)
            for m in list(target.ready)[:limit]
        ]

    async def message_count(self, queue: str) -> int:
        self._require_connection()
        target = self.broker.queues.get(queue)
        return len(target.ready) if target else 0

    async def delete_queue(self, queue: str) -> None:
        removed = self.broker.queues.pop(queue, None)
        if removed is not None:
            for consumer in removed.consumers:
                consumer.active = False
        for bindings in self.broker.bindings.values():
            bindings.difference_update({b for b in bindings if b[1] == queue})
