"""Delivery guarantees (ARCHITECTURE.md): the outbox loses no event, the inbox runs none twice.
Each test runs on the embedded default (memory broker, SQLite) and on RabbitMQ with PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.events.envelope import Contract, Envelope, Event
from shared.outbox import Handlers, OutboxRelay, UnitOfWork, utcnow
from tests.conftest import PostgresDatabases
from tests.foundation.stack import RETRY_DELAYS, Stack, database_urls, recording_handlers, running_stack
from tests.support import PROBE_SENT, Probe, delete_namespace, tables, wait_until

pytestmark = pytest.mark.parametrize("kind", ["embedded", "production"])


@pytest.fixture
async def stack_factory(kind: str, tmp_path, request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Any]:
    amqp_url = None
    control = None
    postgres = None
    if kind == "production":
        rabbitmq = request.getfixturevalue("rabbitmq")
        amqp_url, control = rabbitmq.url, rabbitmq
        postgres = PostgresDatabases(request.getfixturevalue("postgres_server_url"))

    def make(handlers: Handlers | None = None, **overrides: Any) -> Any:
        async def build() -> Any:
            producer_url, consumer_url = await database_urls(kind, tmp_path, postgres)
            return running_stack(
                kind,
                namespace=namespace,
                producer_url=producer_url,
                consumer_url=consumer_url,
                amqp_url=amqp_url,
                broker_control=control,
                handlers=handlers or recording_handlers(),
                **overrides,
            )

        return build()

    yield make
    if control is not None:
        await asyncio.to_thread(control.ensure_running)
    if amqp_url is not None:
        await delete_namespace(amqp_url, namespace, RETRY_DELAYS)
    if postgres is not None:
        await postgres.drop_all()


async def test_an_event_is_published_after_its_transaction_commits(stack_factory):
    async with await stack_factory() as stack:
        await stack.emit("committed")
        await wait_until(lambda: _values_are(stack, ["committed"]), message="event handled")
        assert await stack.producer.relay.backlog() == 0


async def _relay_waiting(stack: Stack) -> None:
    """Past the start-up pass: an event published and handled, so the relay waits for a wake-up or its poll."""
    await stack.emit("warm-up")
    await wait_until(lambda: _values_are(stack, ["warm-up"]), timeout=10, message="warm-up event handled")


async def test_the_relay_publishes_right_after_the_commit_not_at_its_next_poll(stack_factory):
    async with await stack_factory(outbox_poll_interval=300) as stack:
        await _relay_waiting(stack)
        await stack.emit("at-once")
        # Polling every five minutes, the relay publishes within seconds only if the commit woke it.
        await wait_until(lambda: _values_are(stack, ["warm-up", "at-once"]), timeout=5, message="published at once")


async def test_a_row_committed_without_waking_the_relay_is_published_by_its_poll(stack_factory):
    """The poll is the safety net: for a row another replica committed, or a wake-up lost."""
    async with await stack_factory(outbox_poll_interval=0.3) as stack:
        await _relay_waiting(stack)
        other_replica = async_sessionmaker(stack.producer.engine)  # not this runtime's sessions: no wake-up
        async with other_replica() as session, session.begin():
            uow = UnitOfWork(session, stack.producer.clock, tables, "exchange")
            await uow.emit(PROBE_SENT, Probe(value="found-by-polling"))
        await wait_until(
            lambda: _values_are(stack, ["warm-up", "found-by-polling"]), timeout=10, message="published by the poll"
        )


async def test_an_event_staged_in_a_rolled_back_transaction_is_never_published(stack_factory):
    async with await stack_factory() as stack:
        with pytest.raises(RuntimeError):
            async with stack.producer.messaging.transaction() as uow:
                await uow.emit(PROBE_SENT, Probe(value="rolled-back"))
                raise RuntimeError("the business change failed")
        await stack.emit("marker")
        await wait_until(lambda: _values_are(stack, ["marker"]), message="marker handled")
        assert await stack.effect_values() == ["marker"]


@pytest.mark.serial  # stops and starts the shared broker
async def test_events_written_while_the_broker_is_stopped_all_arrive_after_it_starts_none_twice(stack_factory):
    async with await stack_factory() as stack:
        await stack.control.stop()
        await wait_until(lambda: not stack.producer.transport.connected, message="outage noticed")
        values = [f"during-outage-{n}" for n in range(40)]
        await stack.emit(*values)
        await stack.producer.relay.drain()  # the relay tries, the broker refuses, rows stay pending
        assert await stack.producer.relay.backlog() == 40

        await stack.control.start()
        await wait_until(lambda: _count_is(stack, 40), timeout=60, message="every event handled after the outage")
        await wait_until(lambda: _backlog_is(stack.producer.relay, 0), message="outbox emptied")
        # A copy published twice around the outage (a confirm lost with the connection) is in the
        # queue before this barrier: once the barrier is handled, a second effect would be visible.
        await stack.emit("barrier")
        await wait_until(lambda: _count_is(stack, 41), timeout=30, message="barrier handled")
        handled = Counter(await stack.effect_values())
        assert handled == Counter([*values, "barrier"]), "an event lost or handled twice"
        assert _consumed(stack, "handled") == 41


async def test_a_redelivered_event_is_acknowledged_and_its_effect_happens_once(stack_factory):
    async with await stack_factory() as stack:
        async with stack.producer.messaging.transaction() as uow:
            envelope = await uow.emit(PROBE_SENT, Probe(value="once"))
        await wait_until(lambda: _count_is(stack, 1), message="first delivery handled")

        await stack.producer.bus.publish(envelope)  # the broker delivers the same event again
        await stack.producer.bus.publish(envelope)
        await stack.emit("after")
        await wait_until(lambda: _count_is(stack, 2), message="later event handled")
        # The copies were acknowledged and skipped: not failed, retried or dead-lettered.
        await wait_until(lambda: _consumed(stack, "duplicate") == 2, message="both copies recognised")
        assert await stack.effect_values() == ["once", "after"]
        assert _consumed(stack, "handled") == 2
        assert _consumed(stack, "retried") == 0


async def test_a_failing_handler_leaves_no_effect_and_the_retry_applies_it_once(stack_factory):
    failing = {"flaky"}
    async with await stack_factory(recording_handlers(fail_values=failing)) as stack:
        await stack.emit("flaky")
        queues = stack.consumer.queues
        await wait_until(
            lambda: stack.consumer.transport.message_count(queues.dead_letter_queue),
            timeout=20,
            message="dead-lettered after its attempts",
        )
        # Every attempt wrote its effect and then failed: the rollback took each one away.
        assert await stack.effect_count() == 0
        failing.clear()  # the cause is fixed
        assert await stack.consumer.dead_letters.replay() == 1
        await wait_until(lambda: _count_is(stack, 1), message="replayed event handled")
        assert await stack.effect_values() == ["flaky"]


NOTIFIER_RELAYED = Contract("notifier.probe.relayed.v1", Probe, "a test event caused by another", register=False)


async def test_events_caused_by_a_handler_carry_its_correlation_and_causation(stack_factory):
    handlers = Handlers()
    caused: list[Envelope] = []

    @handlers.on(PROBE_SENT)
    async def relay(uow: UnitOfWork, event: Event[Probe]) -> None:
        caused.append(await uow.emit(NOTIFIER_RELAYED, Probe(value=event.data.value)))

    async with await stack_factory(handlers) as stack:
        async with stack.producer.messaging.transaction() as uow:
            original = await uow.emit(PROBE_SENT, Probe(value="x"))
        await wait_until(lambda: caused, message="handler ran")
        assert caused[0].correlation_id == original.correlation_id
        assert caused[0].causation_id == str(original.id)
        await wait_until(lambda: _backlog_is(stack.consumer.relay, 0), message="caused event published")


async def test_published_and_processed_rows_are_pruned_after_their_keeping_time(stack_factory):
    async with await stack_factory(outbox_retention=timedelta(hours=1), inbox_retention=timedelta(days=2)) as stack:
        await stack.emit("old", "recent")
        await wait_until(lambda: _count_is(stack, 2), message="events handled")
        async with stack.producer.sessions.begin() as session:
            await session.execute(
                update(tables.outbox)
                .where(tables.outbox.c.event_type == PROBE_SENT.name)
                .where(tables.outbox.c.seq == select(func.min(tables.outbox.c.seq)).scalar_subquery())
                .values(published_at=utcnow() - timedelta(hours=2))
            )
        async with stack.consumer.sessions.begin() as session:
            oldest = select(func.min(tables.inbox.c.processed_at)).scalar_subquery()
            await session.execute(
                update(tables.inbox)
                .where(tables.inbox.c.processed_at == oldest)
                .values(processed_at=utcnow() - timedelta(days=3))
            )
        await stack.producer.bus.stop()  # so the next event stays pending: those are never pruned
        await stack.emit("pending")

        assert await stack.producer.prune() == (1, 0)
        assert await stack.consumer.prune() == (0, 1)
        async with stack.producer.sessions() as session:
            remaining = await session.scalars(select(tables.outbox.c.payload).order_by(tables.outbox.c.seq))
            values = [Envelope.model_validate_json(payload).data["value"] for payload in remaining]
        assert values == ["recent", "pending"]


async def test_relays_in_several_replicas_share_the_outbox_without_publishing_an_event_twice(stack_factory):
    async with await stack_factory() as stack:
        await stack.producer.stop()  # its own relay stays out of the way; its database stays usable
        async with stack.producer.messaging.transaction() as uow:
            for n in range(300):
                await uow.emit(PROBE_SENT, Probe(value=f"e{n}"))

        published: Counter[str] = Counter()

        class CountingBus:
            async def publish(self, envelope: Envelope) -> None:
                await asyncio.sleep(0)  # let the other replica run in between
                published[str(envelope.id)] += 1

        replicas = [
            OutboxRelay(stack.producer.sessions, tables, CountingBus(), batch_size=25)  # type: ignore[arg-type]
            for _ in range(3)
        ]
        await asyncio.gather(*(relay.drain() for relay in replicas))
        assert len(published) == 300
        assert set(published.values()) == {1}
        assert await replicas[0].backlog() == 0


def _consumed(stack: Stack, outcome: str) -> float:
    sample = stack.consumer.metrics.registry.get_sample_value(
        "imi_events_consumed_total", {"event_type": PROBE_SENT.name, "outcome": outcome}
    )
    return sample or 0.0


async def _backlog_is(relay: OutboxRelay, expected: int) -> bool:
    return await relay.backlog() == expected


async def _values_are(stack: Stack, expected: list[str]) -> bool:
    return await stack.effect_values() == expected


async def _count_is(stack: Stack, expected: int) -> bool:
    return await stack.effect_count() == expected
