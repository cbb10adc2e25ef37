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
