"""1. Request throughput: N concurrent clients (1, 8, 32) write and send requests over HTTP to the
exchange, run as a container runs it (``python -m services serve exchange``, uvicorn, PostgreSQL,
RabbitMQ), with real EdDSA access tokens checked against a JWKS on loopback.

One iteration of a client is one request written (``POST /requests``) and sent
(``POST /requests/{id}/send``): two HTTP calls, two transactions, two events through the outbox.
The notifier's and retention's queues are declared and bound as those services bind them (without
consumers), so every event the exchange publishes is really stored by RabbitMQ.

Floor, same concurrency and duration, on the same PostgreSQL and RabbitMQ: per operation, the same
JSON payload INSERTed into a scratch table and COMMITted with raw asyncpg, then one persistent
message published with aio-pika and its publisher confirm awaited (a durable quorum queue). One
floor operation stands for one HTTP call (one state change plus its event); the ratio is HTTP
calls per second over floor operations per second. The floor's pool has as many connections as
the service may open (``IMI_DATABASE_POOL_SIZE`` plus as many overflow).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg
import httpx

from bench.core import Mode, Result, cpu_seconds, latency_summary, log, safe_ratio
from bench.infra import Infra, ServiceProcess, asyncpg_dsn, migrate, services_running
from bench.world import World, build_world, draft_body, pick_responder, prefeed
from shared.bus.topology import ServiceQueues
from shared.bus.transport import Topology

CONCURRENCY = (1, 8, 32)
POOL = 20  # the service's pool: IMI_DATABASE_POOL_SIZE (10) plus max_overflow (10)


@dataclass
class Run:
    """Latencies (seconds) and completions of one timed phase."""

    latencies: list[float] = field(default_factory=list)
    create: list[float] = field(default_factory=list)
    send: list[float] = field(default_factory=list)
    completed: int = 0
    errors: int = 0
    first_error: str = ""


async def declare_consumer_queues(infra: Infra) -> None:
    """The notifier's and retention's queues, bound as they bind them, so events are stored."""
    from services import load_definition
    from shared.bus.amqp import AmqpTransport

    transport = AmqpTransport(infra.amqp)
    await transport.start()
    await transport.wait_connected(10)
    try:
        for service in ("notifier", "retention"):
            queues = ServiceQueues(infra.namespace, service, (1.0, 5.0, 30.0))
            await transport.declare(queues.exchange_topology())
            await transport.declare(queues.consumer_topology(load_definition(service).handlers.event_types))
        await transport.declare(Topology())
    finally:
        await transport.stop()


async def timed(
    concurrency: int, warmup: float, duration: float, iteration: Callable[[int, Run], Coroutine[Any, Any, None]]
) -> tuple[Run, float]:
    """Run ``concurrency`` loops of ``iteration``; only iterations started after the warm-up and
    finished before the end count."""
    run = Run()
    start = time.perf_counter()
    counted_from = start + warmup
    stop_at = counted_from + duration

    async def loop(index: int) -> None:
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            probe = Run()
            await iteration(index, probe)
            ended = time.perf_counter()
            if began >= counted_from and ended <= stop_at:
                run.latencies += probe.latencies
                run.create += probe.create
                run.send += probe.send
                run.completed += probe.completed
                run.errors += probe.errors
                run.first_error = run.first_error or probe.first_error

    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    return run, duration


async def service_phase(base_url: str, world: World, concurrency: int, warmup: float, duration: float) -> Run:
    requesters = world.requesters()
    clients = []
    for i in range(concurrency):
        user = requesters[i % len(requesters)]
        clients.append(
            (
                user,
                httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {user.token}"}, timeout=60),
                random.Random(1000 + i),
            )
        )

    async def iteration(index: int, run: Run) -> None:
        user, client, rng = clients[index]
        body = draft_body(rng, pick_responder(rng, world, user))
        t0 = time.perf_counter()
        created = await client.post("/requests", json=body)
        t1 = time.perf_counter()
        if created.status_code != 201:
            run.errors += 1
            run.first_error = f"POST /requests {created.status_code} {created.text[:300]}"
            return
        request_id = created.json()["id"]
        sent = await client.post(f"/requests/{request_id}/send")
        t2 = time.perf_counter()
        if sent.status_code != 200:
            run.errors += 1
            run.first_error = f"POST /send {sent.status_code} {sent.text[:300]}"
            return
        run.create.append(t1 - t0)
        run.send.append(t2 - t1)
        run.latencies += [t1 - t0, t2 - t1]
        run.completed += 1

    try:
        run, _ = await timed(concurrency, warmup, duration, iteration)
    finally:
        await asyncio.gather(*(client.aclose() for _, client, _ in clients))
    return run


async def floor_phase(
    infra: Infra, database_url: str, payloads: list[str], concurrency: int, warmup: float, duration: float
) -> Run:
    pool = await asyncpg.create_pool(asyncpg_dsn(database_url), min_size=1, max_size=min(POOL, concurrency))
    # Robust, like the services' transport: the shared broker may be restarted by other tests.
    broker = await aio_pika.connect_robust(infra.amqp)
    queue_name = f"{infra.namespace}.floor"
    try:
        channel = await broker.channel(publisher_confirms=True)
        await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})

        async def publish(body: bytes) -> None:
            for attempt in range(120):
                try:
                    await channel.default_exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue_name
                    )
                    return
                except Exception:
                    # The robust connection restores the channel once the broker is back.
                    retries[0] += 1
                    if attempt == 119:
                        raise
                    await asyncio.sleep(0.5)

        retries = [0]

        async def iteration(index: int, run: Run) -> None:
            payload = payloads[(index * 7919 + run.completed) % len(payloads)]
            t0 = time.perf_counter()
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute("INSERT INTO bench_floor (payload) VALUES ($1)", payload)
            await publish(payload.encode())
            run.latencies.append(time.perf_counter() - t0)
            run.completed += 1

        run, _ = await timed(concurrency, warmup, duration, iteration)
        if retries[0]:
            run.errors += retries[0]
            run.first_error = f"{retries[0]} publishes retried (the broker went away meanwhile)"
        with contextlib.suppress(Exception):
            await channel.queue_delete(queue_name)
        return run
    finally:
        await broker.close()
        await pool.close()


def summarise(run: Run, duration: float, calls_per_iteration: int) -> dict[str, Any]:
    figures = {
        "iterations": run.completed,
        "per_s": round(run.completed / duration, 1),
        "calls_per_s": round(run.completed * calls_per_iteration / duration, 1),
        "latency": latency_summary(run.latencies),
        "errors": run.errors,
    }
    if run.first_error:
        figures["first_error"] = run.first_error
    if run.create:
        figures["create_latency"] = latency_summary(run.create)
        figures["send_latency"] = latency_summary(run.send)
    return figures


async def run(infra: Infra, mode: Mode) -> Result:
    levels = mode.pick(CONCURRENCY, CONCURRENCY, (1, 4))
    duration = mode.pick(20.0, 5.0, 1.5)
    warmup = mode.pick(3.0, 1.0, 0.5)
    result = Result(
        "throughput",
        "Request throughput over HTTP (exchange on PostgreSQL and RabbitMQ)",
        mode.name,
        sizes={"concurrency": list(levels), "seconds_per_level": duration, "warmup_s": warmup},
        target="at 32 clients: >= 0.5 x floor throughput and p99 < 100 ms",
        ratio_means="exchange HTTP calls/s over floor operations/s (INSERT+COMMIT+confirmed publish)",
    )
    exchange_db = await infra.create_database()
    floor_db = await infra.create_database()
    await migrate("exchange", exchange_db)
    connection = await asyncpg.connect(asyncpg_dsn(floor_db))
    await connection.execute("CREATE TABLE bench_floor (id bigserial PRIMARY KEY, payload jsonb NOT NULL)")
    await connection.close()
    world = build_world(infra.tokens, authorities_per_country=mode.pick(6, 4, 2), handlers_per_authority=2)
    settings = infra.settings(exchange_database_url=exchange_db)
    await prefeed("exchange", settings, world)
    await declare_consumer_queues(infra)
    rng = random.Random(5)
    payloads = [json.dumps(draft_body(rng, pick_responder(rng, world, u))) for u in world.requesters()]
    exchange = ServiceProcess(infra, "exchange", exchange_db)
    figures: dict[str, Any] = {}
    floors: dict[str, Any] = {}
    async with services_running(exchange):
        idle_rss = exchange.rss()
        for level in levels:
            log(f"throughput: floor at {level} clients")
            floor_run = await floor_phase(infra, floor_db, payloads, level, warmup, duration)
            floors[f"{level}_clients"] = summarise(floor_run, duration, 1)
            log(f"throughput: exchange at {level} clients")
            before = cpu_seconds(exchange.pid)
            service_run = await service_phase(exchange.url, world, level, warmup, duration)
            after = cpu_seconds(exchange.pid)
            figures[f"{level}_clients"] = summarise(service_run, duration, 2)
            calls = max(1, service_run.completed * 2)
            figures[f"{level}_clients"]["exchange_cpu_ms_per_call"] = {
                # Over warm-up and timed phase together, divided by the calls counted: an upper bound.
                "user": round((after[0] - before[0]) * 1000 / calls * duration / (duration + warmup), 2),
                "system": round((after[1] - before[1]) * 1000 / calls * duration / (duration + warmup), 2),
            }
            figures[f"{level}_clients"]["ratio"] = safe_ratio(
                figures[f"{level}_clients"]["calls_per_s"], floors[f"{level}_clients"]["calls_per_s"]
            )
        figures["exchange_rss_mib"] = {"idle": idle_rss, "after_load": exchange.rss()}
    top = f"{levels[-1]}_clients"
    service, floor = figures[top], floors[top]
    result.figures, result.floor = figures, floors
    result.ratio = safe_ratio(service["calls_per_s"], floor["calls_per_s"])
    p99 = service["latency"]["p99_ms"]
    result.met = bool(result.ratio is not None and result.ratio >= 0.5 and p99 is not None and p99 < 100)
    if levels[-1] != 32:
        result.met = None
    result.headline = (
        f"{levels[-1]} clients: {service['per_s']} requests/s ({service['calls_per_s']} calls/s), "
        f"p50 {service['latency']['p50_ms']} ms, p99 {p99} ms"
    )
    result.floor_headline = (
        f"{floor['calls_per_s']} ops/s, p50 {floor['latency']['p50_ms']} ms, p99 {floor['latency']['p99_ms']} ms"
    )
    result.notes.append(
        "A request is written and sent: 2 HTTP calls. Latency figures are per HTTP call; create and send are also "
        "given apart. Tokens are real EdDSA tokens verified by the service against a JWKS on loopback."
    )
    errors = sum(figures[f"{level}_clients"]["errors"] for level in levels)
    if errors:
        result.notes.append(f"{errors} HTTP calls failed; see first_error")
    return result
