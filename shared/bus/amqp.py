"""RabbitMQ through aio-pika, with our own reconnect supervision.

aio-pika's robust connection restores channels and consumers after most outages, but not all: a
consumer the broker cancels (its queue deleted and re-created, a quorum leader moving) or a channel
closed by a channel error stays dead while the connection looks healthy. Here one supervisor owns
the connection: whenever the connection, a consumer's channel or a consumer goes away, it tears the
whole connection down and builds it again (declarations, then consumers), with growing delays
while the broker is unreachable. Readiness reports what the supervisor has, never a guess.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Mapping
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractIncomingMessage

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
from shared.logging import get_logger
from shared.waiting import wait_set, within

log = get_logger(__name__)


def queue_arguments(spec: QueueSpec) -> dict[str, Any]:
    """Durable quorum queue; dead-lettering at-least-once so a message is never dropped in transit."""
    arguments: dict[str, Any] = {"x-queue-type": "quorum"}
    if spec.dead_letter_exchange is not None:
        arguments["x-dead-letter-exchange"] = spec.dead_letter_exchange
        arguments["x-dead-letter-strategy"] = "at-least-once"
        arguments["x-overflow"] = "reject-publish"
        if spec.dead_letter_routing_key is not None:
            arguments["x-dead-letter-routing-key"] = spec.dead_letter_routing_key
    if spec.message_ttl_ms is not None:
        arguments["x-message-ttl"] = spec.message_ttl_ms
    return arguments


class _Delivery:
    def __init__(self, message: AbstractIncomingMessage) -> None:
        self._message = message
        self.body = message.body
        self.routing_key = message.routing_key or ""
        self.message_id = message.message_id
        self.headers: Mapping[str, Any] = dict(message.headers or {})
        self.redelivered = bool(message.redelivered)

    async def ack(self) -> None:
        await self._message.ack()

    async def nack(self, *, requeue: bool) -> None:
        await self._message.nack(requeue=requeue)


class AmqpTransport(Transport):
    def __init__(self, url: str, *, publish_timeout: float = 10.0, max_reconnect_delay: float = 10.0) -> None:
        self._url = url
        self._publish_timeout = publish_timeout
        self._max_reconnect_delay = max_reconnect_delay
        self._connection: AbstractConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._topologies: list[Topology] = []
        self._registrations: list[tuple[str, MessageCallback, int]] = []
        self._consumers: list[tuple[AbstractChannel, Any, str]] = []
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._ready = asyncio.Event()
        self._lost = asyncio.Event()
        self._setup_lock = asyncio.Lock()
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._get_channel: AbstractChannel | None = None

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def consumer_count(self) -> int:
        return len(self._consumers) if self.connected else 0

    async def start(self) -> None:
        if self._supervisor is None:
            self._stopping = False
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="amqp-supervisor")

    async def wait_connected(self, timeout: float) -> bool:
        await wait_set(self._ready, timeout)
        return self.connected

    async def stop(self) -> None:
        self._stopping = True
        await self.cancel_consumers()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._teardown()

    # -- connection supervision -------------------------------------------------------------------

    def _on_closed(self, sender: Any, *_: Any) -> None:
        # Only what we still hold counts: resources we closed on purpose were dropped first.
        ours = sender is self._connection or sender is self._publish_channel
        ours = ours or any(sender is channel for channel, _, _ in self._consumers)
        if ours:
            self._ready.clear()
            self._lost.set()

    async def _supervise(self) -> None:
        delay = 0.2
        while not self._stopping:
            self._lost.clear()
            try:
                await self._connect()
                delay = 0.2
                log.info("broker connected", consumers=len(self._consumers))
                await self._lost.wait()
                log.warning("broker connection lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("broker unreachable", error=str(exc), retry_in=delay)
            self._ready.clear()
            await self._teardown()
            if self._stopping:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_reconnect_delay)

    async def _connect(self) -> None:
        async with self._setup_lock:
            connection = await aio_pika.connect(self._url, timeout=10)
            self._connection = connection
            connection.close_callbacks.add(self._on_closed)
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            channel.close_callbacks.add(self._on_closed)
            self._publish_channel = channel
            self._exchanges = {DEFAULT_EXCHANGE: channel.default_exchange}
            for topology in self._topologies:
                await self._apply(topology)
            for queue, callback, prefetch in self._registrations:
                await self._start_consumer(queue, callback, prefetch)
            self._ready.set()

    async def _teardown(self) -> None:
        self._consumers.clear()
        self._exchanges.clear()
        self._publish_channel = None
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                await within(connection.close(), 5)

    # -- declarations -----------------------------------------------------------------------------

    async def declare(self, topology: Topology) -> None:
        async with self._setup_lock:
            self._topologies.append(topology)
            if self._ready.is_set():
                await self._on_live_connection(self._apply(topology), self._topologies, topology)

    async def _on_live_connection(self, step: Awaitable[None], recorded: list[Any], item: Any) -> None:
        """Run a set-up step (declaration, consumer) that is also recorded for every reconnect.

        When the broker goes away meanwhile (a restart while a service starts), that is no error of
        the caller's: the supervisor applies everything recorded once the broker is back. A refusal
        on a live connection (a queue that exists with other arguments, say) is the caller's error,
        and the step is forgotten so that reconnects do not repeat it."""
        try:
            await step
        except Exception as exc:
            connection = self._connection
            if connection is not None and not connection.is_closed:
                recorded.remove(item)
                raise
            log.warning("broker lost during set-up; applied again on reconnect", error=repr(exc))
            self._ready.clear()
            self._lost.set()

    async def _apply(self, topology: Topology) -> None:
        assert self._publish_channel is not None
        channel = self._publish_channel
        for name in topology.topic_exchanges:
            self._exchanges[name] = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
        queues = {}
        for spec in topology.queues:
            queues[spec.name] = await channel.declare_queue(spec.name, durable=True, arguments=queue_arguments(spec))
        for binding in topology.bindings:
            queue = queues.get(binding.queue) or await channel.get_queue(binding.queue, ensure=False)
            await queue.bind(binding.exchange, routing_key=binding.routing_key)

    # -- publishing -------------------------------------------------------------------------------

    async def publish(self, exchange: str, routing_key: str, message: OutgoingMessage, *, mandatory: bool) -> None:
        channel = self._publish_channel
        if not self._ready.is_set() or channel is None:
            raise BrokerUnavailable("not connected to RabbitMQ")
        target = self._exchanges.get(exchange)
        if target is None:
            target = await channel.get_exchange(exchange, ensure=False)
            self._exchanges[exchange] = target
        amqp_message = aio_pika.Message(
            body=message.body,
            message_id=message.message_id,
            headers=message.headers,
            content_type=message.content_type,
            type=message.type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await target.publish(amqp_message, routing_key, mandatory=mandatory, timeout=self._publish_timeout)
        except Exception as exc:
            raise PublishError(f"RabbitMQ did not confirm {routing_key!r}: {exc!r}") from exc

    # -- consuming --------------------------------------------------------------------------------

    async def consume(self, queue: str, callback: MessageCallback, *, prefetch: int) -> None:
        async with self._setup_lock:
            self._registrations.append((queue, callback, prefetch))
            if self._ready.is_set():
                registration = self._registrations[-1]
                await self._on_live_connection(self._start_consumer(*registration), self._registrations, registration)

    async def _start_consumer(self, queue_name: str, callback: MessageCallback, prefetch: int) -> None:
        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=False)
        channel.close_callbacks.add(self._on_closed)
        underlay = await channel.get_underlay_channel()
        underlay.on_consumer_cancel_callbacks.add(lambda *_: self._on_closed(channel))
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(queue_name, ensure=False)

        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._in_flight.add(task)
            try:
                await callback(_Delivery(message))
            finally:
                if task is not None:
                    self._in_flight.discard(task)

        tag = await queue.consume(on_message, no_ack=False)
        self._consumers.append((channel, queue, tag))

    async def cancel_consumers(self) -> None:
        async with self._setup_lock:
            self._registrations.clear()
            consumers, self._consumers = self._consumers, []
            for _, queue, tag in consumers:
                with contextlib.suppress(Exception):
                    await queue.cancel(tag)
            if self._in_flight:
                await asyncio.gather(*list(self._in_flight), return_exceptions=True)
            for channel, _, _ in consumers:
                with contextlib.suppress(Exception):
                    await channel.close()

    # -- inspection (ops tools, metrics) ----------------------------------------------------------

    async def _utility_channel(self) -> AbstractChannel:
        if not self._ready.is_set() or self._connection is None:
            raise BrokerUnavailable("not connected to RabbitMQ")
        return await self._connection.channel(publisher_confirms=False)

    async def get(self, queue: str) -> IncomingMessage | None:
        # A dedicated channel: whatever the caller leaves unsettled returns to the queue when it closes.
        if self._get_channel is None or self._get_channel.is_closed:
            self._get_channel = await self._utility_channel()
        target = await self._get_channel.get_queue(queue, ensure=False)
        message = await target.get(no_ack=False, fail=False, timeout=5)
        return _Delivery(message) if message is not None else None

    async def browse(self, queue: str, limit: int) -> list[BrowsedMessage]:
        # basic.get hands out one unsettled message at a time on quorum queues, so browse with a
        # consumer on a channel of its own; closing the channel returns every message to the queue.
        channel = await self._utility_channel()
        seen: list[BrowsedMessage] = []
        wanted = 0
        try:
            declared = await channel.declare_queue(queue, passive=True)
            wanted = min(limit, int(declared.declaration_result.message_count or 0))
            if wanted == 0:
                return seen
            enough = asyncio.Event()
            await channel.set_qos(prefetch_count=wanted)

            async def collect(message: AbstractIncomingMessage) -> None:
                seen.append(
                    BrowsedMessage(
                        body=message.body,
                        routing_key=message.routing_key or "",
                        message_id=message.message_id,
                        headers=dict(message.headers or {}),
                    )
                )
                if len(seen) >= wanted:
                    enough.set()

            await declared.consume(collect, no_ack=False)
            await wait_set(enough, 10)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        # The broker requeues them after the channel closes; wait for that so the next look sees them.
        deadline = asyncio.get_running_loop().time() + 5
        while seen and await self.message_count(queue) < wanted and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        return seen[:wanted]

    async def message_count(self, queue: str) -> int:
        channel = await self._utility_channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def delete_queue(self, queue: str) -> None:
        channel = await self._utility_channel()
        try:
            await channel.queue_delete(queue)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
