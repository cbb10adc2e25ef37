"""Helpers the tests share: waiting on a condition (never a bare sleep) and a small service
with an ``effects`` table whose rows are the visible effect of handling an event."""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aio_pika
from sqlalchemy import Column, Integer, MetaData, String, Table, Uuid

from shared.bus.topology import ServiceQueues
from shared.events.envelope import Contract, EventData
from shared.outbox import messaging_tables
from shared.settings import SERVICES


async def wait_until(
    condition: Callable[[], Any | Awaitable[Any]],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition not met",
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout} s")
        await asyncio.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def delete_namespace(amqp_url: str, namespace: str, retry_delays: Sequence[float]) -> None:
    """Remove a test's exchange and queues from the shared RabbitMQ."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for service in SERVICES:
            queues = ServiceQueues(namespace, service, tuple(retry_delays))
            names = [queues.queue, queues.dead_letter_queue]
            names += [queues.retry_queue(n) for n in range(1, len(retry_delays) + 1)]
            for name in names:
                await channel.queue_delete(name)
        await channel.exchange_delete(f"{namespace}.events")


class Probe(EventData):
    value: str


# Test contracts stay out of the event catalogue (register=False).
PROBE_SENT = Contract("exchange.probe.sent.v1", Probe, "a test event", register=False)
PROBE_OTHER = Contract("exchange.probe.ignored.v1", Probe, "a test event nobody binds", register=False)

metadata = MetaData()
tables = messaging_tables(metadata)
effects = Table(
    "effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", Uuid, nullable=False),
    Column("value", String(200), nullable=False),
)
