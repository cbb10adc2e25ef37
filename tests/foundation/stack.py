"""Two small services wired exactly like the real ones (ServiceRuntime): a producer ("exchange")
that emits probe events through its outbox, and a consumer ("notifier") whose handler writes an
``effects`` row through its inbox. Built on the embedded default (memory broker, SQLite) or on
production infrastructure (RabbitMQ, PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from shared.bus.memory import MemoryBroker, MemoryTransport
from shared.events.envelope import Event
from shared.outbox import Handlers, UnitOfWork
from shared.service import ServiceDefinition, ServiceRuntime
from shared.settings import Settings
from tests.support import PROBE_SENT, Probe, effects, metadata, tables

RETRY_DELAYS = [0.1, 0.2]


def definition(name: str, handlers: Handlers | None = None) -> ServiceDefinition:
    return ServiceDefinition(
        name=name,
        title=f"test {name}",
        description="test service",
        metadata=metadata,
        tables=tables,
        handlers=handlers or Handlers(),
        migrations=Path("unused"),
    )


def recording_handlers(fail_values: set[str] | None = None) -> Handlers:
    handlers = Handlers()

    @handlers.on(PROBE_SENT)
    async def record(uow: UnitOfWork, event: Event[Probe]) -> None:
        await uow.session.execute(insert(effects).values(event_id=event.id, value=event.data.value))
        if fail_values and event.data.value in fail_values:
            raise RuntimeError("handler failed after writing its effect")

    return handlers


@dataclass
class Stack:
    kind: str
    producer: ServiceRuntime
    consumer: ServiceRuntime
    control: Any  # has async stop() / start() of the broker

    async def emit(self, *values: str) -> None:
        for value in values:
            async with self.producer.messaging.transaction() as uow:
                await uow.emit(PROBE_SENT, Probe(value=value))

    async def effect_values(self) -> list[str]:
        async with self.consumer.sessions() as session:
            return list((await session.scalars(select(effects.c.value).order_by(effects.c.id))).all())

    async def effect_count(self) -> int:
        async with self.consumer.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(effects)) or 0)


async def database_urls(kind: str, tmp_path: Path, postgres: Any) -> tuple[str, str]:
    if kind == "embedded":
        return (
            f"sqlite+aiosqlite:///{tmp_path / 'exchange.db'}",
            f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}",
        )
    return await postgres.create(), await postgres.create()


@asynccontextmanager
async def running_stack(
    kind: str,
    *,
    namespace: str,
    producer_url: str,
    consumer_url: str,
    amqp_url: str | None,
    broker_control: Any,
    handlers: Handlers,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    settings = Settings(
        broker_url=amqp_url or "memory://unused",
        bus_namespace=namespace,
        bus_retry_delays=RETRY_DELAYS,
        exchange_database_url=producer_url,
        notifier_database_url=consumer_url,
        **{"outbox_poll_interval": 0.2, **overrides},
    )
    node = MemoryBroker() if kind == "embedded" else None
    runtimes = []
    for name, service_handlers in (("exchange", Handlers()), ("notifier", handlers)):
        transport = MemoryTransport(node) if node is not None else None
        runtime = ServiceRuntime(definition(name, service_handlers), settings, transport=transport)
        async with runtime.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        runtimes.append(runtime)
    producer, consumer = runtimes
    await consumer.start()
    await producer.start()
    try:
        yield Stack(kind, producer, consumer, node if node is not None else broker_control)
    finally:
        for runtime in (producer, consumer):
            await runtime.stop()
