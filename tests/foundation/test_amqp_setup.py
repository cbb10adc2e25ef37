"""A broker that goes away while a service sets up its queues and consumers (a RabbitMQ restart
during a rolling deploy) is not a failed start: the declaration and the consumer are recorded,
and the reconnect supervisor applies them when the broker is back (shared/bus/amqp.py)."""

from __future__ import annotations

import aio_pika
import pytest

from shared.bus.amqp import AmqpTransport
from shared.bus.topology import ServiceQueues
from shared.bus.transport import IncomingMessage, OutgoingMessage, Topology
from tests.support import PROBE_SENT, delete_namespace, wait_until

pytestmark = pytest.mark.broker

RETRY_DELAYS = (0.2,)


async def test_a_connection_lost_while_declaring_and_consuming_is_set_up_again(rabbitmq, namespace):
    queues = ServiceQueues(namespace, "notifier", RETRY_DELAYS)
    transport = AmqpTransport(rabbitmq.url)
    await transport.start()
    try:
        assert await transport.wait_connected(15)
        apply, start_consumer = transport._apply, transport._start_consumer
        drops: list[str] = []

        async def apply_losing_the_connection(topology: Topology) -> None:
            if "declare" not in drops:
                drops.append("declare")
                assert transport._connection is not None
                await transport._connection.close()  # the broker goes away mid-declaration
            await apply(topology)

        async def consume_losing_the_connection(queue: str, callback, prefetch: int) -> None:  # type: ignore[no-untyped-def]
            if "consume" not in drops:
                drops.append("consume")
                assert transport._connection is not None
                await transport._connection.close()
            await start_consumer(queue, callback, prefetch)

        transport._apply = apply_losing_the_connection  # type: ignore[method-assign]
        transport._start_consumer = consume_losing_the_connection  # type: ignore[method-assign]

        await transport.declare(queues.consumer_topology({PROBE_SENT.name}))  # no exception
        assert await transport.wait_connected(15)
        received: list[bytes] = []

        async def record(message: IncomingMessage) -> None:
            received.append(message.body)
            await message.ack()

        await transport.consume(queues.queue, record, prefetch=10)  # no exception either
        assert drops == ["declare", "consume"]
        assert await transport.wait_connected(15)
        await wait_until(lambda: transport.consumer_count == 1, timeout=15)

        # Everything was applied again: the topic routes to the queue and the consumer gets it.
        await transport.publish(
            queues.events_exchange,
            PROBE_SENT.name,
            OutgoingMessage(body=b"after the drop", message_id="m1", headers={}, type=PROBE_SENT.name),
            mandatory=True,
        )
        await wait_until(lambda: received == [b"after the drop"], timeout=15)
    finally:
        await transport.stop()
        await delete_namespace(rabbitmq.url, namespace, RETRY_DELAYS)


async def test_a_declaration_refused_on_a_live_connection_is_the_callers_error(rabbitmq, namespace):
    name = f"{namespace}.notifier"
    connection = await aio_pika.connect(rabbitmq.url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True)  # a classic queue of that name exists
    transport = AmqpTransport(rabbitmq.url)
    await transport.start()
    try:
        assert await transport.wait_connected(15)
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
            await transport.declare(ServiceQueues(namespace, "notifier", RETRY_DELAYS).consumer_topology(set()))
    finally:
        await transport.stop()
        await delete_namespace(rabbitmq.url, namespace, RETRY_DELAYS)


async def test_service_queues_are_durable_quorum_queues_and_events_are_persistent(rabbitmq, namespace):
    """ARCHITECTURE.md, Events: a durable topic exchange, per consuming service durable quorum
    queues (dead-lettering at least once), persistent messages. The broker accepts a re-declaration
    only when it is equivalent to what exists, so these are checked on RabbitMQ itself."""
    from datetime import UTC, datetime

    from shared.bus.bus import EventBus
    from shared.events.envelope import Envelope

    queues = ServiceQueues(namespace, "notifier", RETRY_DELAYS)
    bus = EventBus(AmqpTransport(rabbitmq.url), queues, prefetch=1)
    await bus.start()
    try:
        assert await bus.transport.wait_connected(15)

        async def never(_: Envelope) -> None:
            raise AssertionError("nothing is consumed here")

        await bus.subscribe({PROBE_SENT.name}, never)
        await bus.stop_consuming()
        envelope = Envelope(
            type=PROBE_SENT.name,
            occurred_at=datetime.now(UTC),
            producer="exchange",
            correlation_id="c",
            data={"value": "v"},
        )
        await bus.publish(envelope)

        dead_lettering = {"x-dead-letter-exchange": "", "x-dead-letter-strategy": "at-least-once"}
        expected = {
            queues.queue: {
                "x-queue-type": "quorum",
                **dead_lettering,
                "x-overflow": "reject-publish",
                "x-dead-letter-routing-key": f"{namespace}.notifier.dlq",
            },
            queues.dead_letter_queue: {"x-queue-type": "quorum"},
            f"{namespace}.notifier.retry.200": {
                "x-queue-type": "quorum",
                **dead_lettering,
                "x-overflow": "reject-publish",
                "x-dead-letter-routing-key": f"{namespace}.notifier",
                "x-message-ttl": 200,
            },
        }
        connection = await aio_pika.connect(rabbitmq.url)
        async with connection:
            channel = await connection.channel()
            for name, arguments in expected.items():
                await channel.declare_queue(name, durable=True, arguments=arguments)  # equivalent: accepted
                with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
                    await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "classic"})
                channel = await connection.channel()  # a refused declaration closes the channel
            await channel.declare_exchange(f"{namespace}.events", aio_pika.ExchangeType.TOPIC, durable=True)
            with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
                await channel.declare_exchange(f"{namespace}.events", aio_pika.ExchangeType.TOPIC, durable=False)
            channel = await connection.channel()

            queue = await channel.declare_queue(queues.queue, passive=True)
            message = await wait_until(lambda: queue.get(fail=False), message="the published event in the queue")
            assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            assert message.message_id == str(envelope.id)
            assert message.routing_key == PROBE_SENT.name
            await message.nack(requeue=True)
    finally:
        await bus.stop()
        await delete_namespace(rabbitmq.url, namespace, RETRY_DELAYS)
