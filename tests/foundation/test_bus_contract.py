"""The bus contract: one suite, run against the memory broker and against real RabbitMQ, so the
embedded default keeps the semantics production relies on (ARCHITECTURE.md, Events)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from shared.bus.bus import ATTEMPT_HEADER, DeadLetterQueue, EventBus
from shared.bus.memory import MemoryBroker, MemoryTransport, topic_matches
from shared.bus.topology import ServiceQueues
from shared.bus.transport import IncomingMessage, OutgoingMessage, PublishError, Transport
from shared.events.envelope import Envelope
from tests.support import PROBE_OTHER, PROBE_SENT, delete_namespace, wait_until

RETRY_DELAYS = (0.2, 0.5)


@dataclass
class BrokerUnderTest:
    kind: str
    make_transport: Callable[[], Transport]
    stop: Callable[[], Awaitable[None]]
    start: Callable[[], Awaitable[None]]
    transports: list[Transport] = field(default_factory=list)

    def transport(self) -> Transport:
        made = self.make_transport()
        self.transports.append(made)
        return made


@pytest.fixture(params=["memory", "rabbitmq"])
async def broker(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[BrokerUnderTest]:
    if request.param == "memory":
        node = MemoryBroker()
        under_test = BrokerUnderTest("memory", lambda: MemoryTransport(node), node.stop, node.start)
    else:
        rabbitmq = request.getfixturevalue("rabbitmq")
        from shared.bus.amqp import AmqpTransport

        under_test = BrokerUnderTest("rabbitmq", lambda: AmqpTransport(rabbitmq.url), rabbitmq.stop, rabbitmq.start)
    yield under_test
    for transport in under_test.transports:
        await transport.stop()
    if request.param == "rabbitmq":
        await asyncio.to_thread(request.getfixturevalue("rabbitmq").ensure_running)
        await delete_namespace(request.getfixturevalue("rabbitmq").url, namespace, RETRY_DELAYS)


class Recorder:
    """A ``process`` function that records what it saw and fails on demand."""

    def __init__(self, fail_on: set[str] | None = None) -> None:
        self.seen: list[tuple[str, float]] = []
        self.fail_on = fail_on or set()

    async def __call__(self, envelope: Envelope) -> None:
        value = envelope.data["value"]
        self.seen.append((value, time.monotonic()))
        if value in self.fail_on:
            raise RuntimeError(f"cannot handle {value}")

    def values(self) -> list[str]:
        return [value for value, _ in self.seen]


def probe(value: str, event_type: str = PROBE_SENT.name) -> Envelope:
    return Envelope(
        type=event_type,
        occurred_at=datetime.now(UTC),
        producer="exchange",
        correlation_id="test",
        data={"value": value},
    )


async def started_bus(broker: BrokerUnderTest, namespace: str, service: str = "notifier") -> EventBus:
    bus = EventBus(broker.transport(), ServiceQueues(namespace, service, RETRY_DELAYS), prefetch=4)
    await bus.start()
    assert await bus.transport.wait_connected(10)
    return bus


async def test_an_event_reaches_every_service_bound_to_its_type_and_no_other(broker, namespace):
    publisher = await started_bus(broker, namespace, "exchange")
    notifier, retention = Recorder(), Recorder()
    await (await started_bus(broker, namespace, "notifier")).subscribe({PROBE_SENT.name}, notifier)
    await (await started_bus(broker, namespace, "retention")).subscribe({PROBE_OTHER.name}, retention)

    await publisher.publish(probe("a"))
    await publisher.publish(probe("b", PROBE_OTHER.name))

    await wait_until(lambda: notifier.values() == ["a"] and retention.values() == ["b"], message="routing")
    assert notifier.values() == ["a"]
    assert retention.values() == ["b"]


async def test_a_failing_event_is_retried_with_growing_delays_then_dead_lettered_while_others_flow(broker, namespace):
    publisher = await started_bus(broker, namespace, "exchange")
    recorder = Recorder(fail_on={"poison"})
    consumer = await started_bus(broker, namespace)
    await consumer.subscribe({PROBE_SENT.name}, recorder)

    await publisher.publish(probe("poison"))
    for n in range(5):
        await publisher.publish(probe(f"ok-{n}"))

    queues = consumer.queues
    await wait_until(
        lambda: broker.transports[1].message_count(queues.dead_letter_queue), timeout=20, message="dead-lettering"
    )
    attempts = [at for value, at in recorder.seen if value == "poison"]
    assert len(attempts) == queues.max_attempts == 3
    # Each retry waited at least its delay, and the delays grow.
    assert attempts[1] - attempts[0] >= RETRY_DELAYS[0] * 0.9
    assert attempts[2] - attempts[1] >= RETRY_DELAYS[1] * 0.9
    assert sorted(v for v in recorder.values() if v != "poison") == [f"ok-{n}" for n in range(5)]
    # The healthy events did not wait behind the poison message's retries.
    assert max(at for value, at in recorder.seen if value.startswith("ok-")) < attempts[1]

    letters = await DeadLetterQueue(consumer.transport, queues).list()
    assert [(letter.event_type, letter.attempts) for letter in letters] == [(PROBE_SENT.name, 3)]
    assert "cannot handle poison" in letters[0].error


async def test_dead_letters_are_listed_without_being_taken_and_replay_sends_them_back(broker, namespace):
    publisher = await started_bus(broker, namespace, "exchange")
    recorder = Recorder(fail_on={"poison-1", "poison-2"})
    consumer = await started_bus(broker, namespace)
    await consumer.subscribe({PROBE_SENT.name}, recorder)
    await publisher.publish(probe("poison-1"))
    await publisher.publish(probe("poison-2"))
    dead_letters = DeadLetterQueue(consumer.transport, consumer.queues)
    dlq = consumer.queues.dead_letter_queue
    await wait_until(lambda: _count_is(consumer.transport, dlq, 2), timeout=20, message="dead-lettering")

    first_look = await dead_letters.list()
    second_look = await dead_letters.list()
    assert [d.message_id for d in first_look] == [d.message_id for d in second_look]
    assert len(first_look) == 2

    recorder.fail_on.clear()  # the cause is fixed
    assert await dead_letters.replay() == 2
    await wait_until(
        lambda: recorder.values().count("poison-1") == 4 and recorder.values().count("poison-2") == 4,
        timeout=10,
        message="replayed events handled",
    )
    assert await consumer.transport.message_count(dlq) == 0


async def _count_is(transport: Transport, queue: str, expected: int) -> bool:
    return await transport.message_count(queue) == expected


async def test_a_malformed_message_goes_to_the_dead_letter_queue_without_retries(broker, namespace):
    recorder = Recorder()
    consumer = await started_bus(broker, namespace)
    await consumer.subscribe({PROBE_SENT.name}, recorder)
    garbage = OutgoingMessage(body=b"{not json", message_id="garbage-1")
    await consumer.transport.publish(consumer.queues.events_exchange, PROBE_SENT.name, garbage, mandatory=True)

    await wait_until(
        lambda: _count_is(consumer.transport, consumer.queues.dead_letter_queue, 1), message="dead-lettering"
    )
    assert recorder.seen == []
    [letter] = await DeadLetterQueue(consumer.transport, consumer.queues).list()
    assert letter.message_id == "garbage-1"
    assert "malformed envelope" in letter.error


async def test_a_message_not_acknowledged_is_delivered_again_to_the_next_consumer(broker, namespace):
    setup = await started_bus(broker, namespace)
    await setup.subscribe({PROBE_SENT.name}, Recorder())
    await setup.stop_consuming()
    queue = setup.queues.queue

    first: list[IncomingMessage] = []

    async def take_without_ack(message: IncomingMessage) -> None:
        first.append(message)

    crashing = broker.transport()
    await crashing.start()
    await crashing.wait_connected(10)
    await crashing.consume(queue, take_without_ack, prefetch=1)
    await setup.publish(probe("x"))
    await wait_until(lambda: first, message="first delivery")
    assert not first[0].redelivered
    await crashing.stop()  # gone without acknowledging

    second: list[IncomingMessage] = []

    async def take_and_ack(message: IncomingMessage) -> None:
        second.append(message)
        await message.ack()

    survivor = broker.transport()
    await survivor.start()
    await survivor.wait_connected(10)
    await survivor.consume(queue, take_and_ack, prefetch=1)
    await wait_until(lambda: second, message="redelivery")
    assert second[0].message_id == first[0].message_id
    assert second[0].redelivered


@pytest.mark.serial  # stops and starts the shared broker
async def test_consumers_resume_by_themselves_after_the_broker_restarts(broker, namespace):
    publisher = await started_bus(broker, namespace, "exchange")
    recorder = Recorder()
    consumer = await started_bus(broker, namespace)
    await consumer.subscribe({PROBE_SENT.name}, recorder)
    await publisher.publish(probe("before"))
    await wait_until(lambda: recorder.values() == ["before"], message="first event")

    await broker.stop()
    await wait_until(lambda: not consumer.transport.connected, message="disconnection noticed")
    assert consumer.transport.consumer_count == 0
    with pytest.raises(PublishError):
        await publisher.publish(probe("while-down"))
    await broker.start()

    await wait_until(lambda: consumer.transport.consumer_count == 1, timeout=30, message="consumer back")
    await wait_until(lambda: publisher.transport.connected, timeout=30, message="publisher back")
    await publisher.publish(probe("after"))
    await wait_until(lambda: recorder.values() == ["before", "after"], timeout=10, message="event after restart")


async def test_retry_attempt_is_carried_in_a_header(broker, namespace):
    """The attempt count travels with the copy, so a restart does not reset a poison message's count."""
    recorder = Recorder(fail_on={"p"})
    consumer = await started_bus(broker, namespace)
    await consumer.subscribe({PROBE_SENT.name}, recorder)
    headers_seen: list[object] = []
    original = consumer._on_message

    async def spy(message: IncomingMessage) -> None:
        headers_seen.append(message.headers.get(ATTEMPT_HEADER))
        await original(message)

    consumer._on_message = spy  # type: ignore[method-assign]
    await consumer.stop_consuming()
    await consumer.transport.consume(consumer.queues.queue, spy, prefetch=1)
    await consumer.publish(probe("p"))
    await wait_until(lambda: len(headers_seen) == 3, timeout=20, message="three attempts")
    assert headers_seen == [None, 2, 3]


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("a.b.c", "a.b.c", True),
        ("a.b.c", "a.b.d", False),
        ("a.*.c", "a.b.c", True),
        ("a.*", "a.b.c", False),
        ("a.#", "a", True),
        ("a.#", "a.b.c", True),
        ("#.c", "a.b.c", True),
        ("#", "anything.at.all", True),
        ("a.#.c", "a.c", True),
        ("a.#.c", "a.x.y.c", True),
        ("a.#.c", "a.x.y.d", False),
    ],
)
def test_memory_broker_topic_matching_follows_amqp(pattern, key, matches):
    assert topic_matches(pattern, key) is matches
