"""A consumer killed mid-handling gets the event again and its effect happens once
(ARCHITECTURE.md, Invariants 1 and 2), on RabbitMQ and PostgreSQL with a real SIGKILL."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest
from sqlalchemy import func, select

from shared.database import create_engine
from tests.foundation.stack import RETRY_DELAYS, definition
from tests.support import delete_namespace, effects, metadata, tables, wait_until

ROOT = Path(__file__).resolve().parents[2]


async def start_consumer(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, list[bytes]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.crash_consumer",
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    output: list[bytes] = []
    ready = asyncio.Event()

    async def read() -> None:
        assert process.stdout is not None
        async for line in process.stdout:  # keep the pipe drained for the process's whole life
            output.append(line)
            if b"consumer ready" in line:
                ready.set()

    _readers.add(asyncio.get_running_loop().create_task(read()))
    try:
        await asyncio.wait_for(ready.wait(), 30)
    except TimeoutError:
        raise AssertionError(b"".join(output).decode(errors="replace")) from None
    return process, output


_readers: set[asyncio.Task[None]] = set()


@pytest.fixture
async def infrastructure(rabbitmq, postgres, namespace) -> AsyncIterator[dict[str, str]]:
    consumer_url = await postgres.create()
    engine = create_engine(consumer_url)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    await engine.dispose()
    yield {
        "IMI_BROKER_URL": rabbitmq.url,
        "IMI_NOTIFIER_DATABASE_URL": consumer_url,
        "IMI_BUS_NAMESPACE": namespace,
        "IMI_BUS_RETRY_DELAYS": str(RETRY_DELAYS),
        "IMI_LOG_FORMAT": "json",
    }
    await delete_namespace(rabbitmq.url, namespace, RETRY_DELAYS)


@pytest.mark.parametrize("crash_at", ["before_commit", "after_commit"])
async def test_a_consumer_killed_while_handling_gets_the_event_again_and_its_effect_happens_once(
    infrastructure, rabbitmq, postgres, crash_at
):
    from shared.service import ServiceRuntime
    from shared.settings import Settings

    env = infrastructure
    first, _ = await start_consumer({**env, "IMI_TEST_CRASH_VALUE": "victim", "IMI_TEST_CRASH_AT": crash_at})
    producer = ServiceRuntime(
        definition("exchange"),
        Settings(
            broker_url=env["IMI_BROKER_URL"],
            bus_namespace=env["IMI_BUS_NAMESPACE"],
            exchange_database_url=await postgres.create(),
        ),
    )
    async with producer.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    await producer.start()
    consumer_engine = create_engine(env["IMI_NOTIFIER_DATABASE_URL"])
    second = None
    try:
        from tests.support import PROBE_SENT, Probe

        async with producer.messaging.transaction() as uow:
            victim = await uow.emit(PROBE_SENT, Probe(value="victim"))
        assert await asyncio.wait_for(first.wait(), 30) == -9  # died by SIGKILL mid-handling

        async def victim_rows() -> int:
            async with consumer_engine.connect() as connection:
                count = await connection.scalar(
                    select(func.count()).select_from(effects).where(effects.c.value == "victim")
                )
                return int(count or 0)

        # Before the commit nothing was kept; after it the effect and the inbox entry were.
        assert await victim_rows() == (0 if crash_at == "before_commit" else 1)

        second, output = await start_consumer(env)
        async with producer.messaging.transaction() as uow:
            await uow.emit(PROBE_SENT, Probe(value="later"))

        async def later_handled() -> bool:
            async with consumer_engine.connect() as connection:
                return bool(await connection.scalar(select(func.count()).where(effects.c.value == "later")))

        await wait_until(later_handled, timeout=30, message="the second consumer handles events")
        await wait_until(lambda: _inbox_count(consumer_engine, 2), timeout=30, message="victim redelivered")
        if crash_at == "after_commit":
            # The redelivered copy reached the new consumer, which knew it and acknowledged it.
            await wait_until(
                lambda: any(b"already handled" in line and str(victim.id).encode() in line for line in output),
                timeout=30,
                message="redelivery recognised by the inbox",
            )
        assert await victim_rows() == 1
        assert not [line for line in output if b"event handling failed" in line]
        assert await _dead_letters(rabbitmq.url, env["IMI_BUS_NAMESPACE"]) == 0
    finally:
        await producer.stop()
        await consumer_engine.dispose()
        for process in (first, second):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()


async def _dead_letters(amqp_url: str, namespace: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{namespace}.notifier.dlq", passive=True)
        return int(queue.declaration_result.message_count or 0)


async def _inbox_count(engine, expected: int) -> bool:  # type: ignore[no-untyped-def]
    async with engine.connect() as connection:
        return await connection.scalar(select(func.count()).select_from(tables.inbox)) == expected
