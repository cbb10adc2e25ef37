"""7. Memory of each service, idle and under the throughput load: the resident set (VmRSS) of
``python -m services serve <service>``, each in its own subprocess on PostgreSQL and RabbitMQ.

The four services start together in one broker namespace: the registry with a directory of 1,000
authorities (``--quick``: 300) and the run's signing key, the exchange and the notifier with their
read models fed (the world of the throughput benchmark), retention empty. Idle: the median of
samples taken over a few seconds once all four are ready and settled. Under load: 32 clients write
and send requests to the exchange (benchmark 1's load) while 4 clients search the registry's
directory; the notifier e-mails every request received to an SMTP server on loopback and retention
records every request event, so all four work. RSS is sampled every half second; the peak and the
last sample are reported.

Floor: a bare Python process that imports what every service imports (FastAPI, SQLAlchemy, asyncpg,
aio-pika, uvicorn, pydantic) and idles.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import sys
import time
from typing import Any

import httpx

from bench import directory
from bench.core import Mode, Result, log, rss_mib, safe_ratio
from bench.infra import ROOT, Infra, ServiceProcess, SmtpSink, migrate, services_running
from bench.throughput import service_phase
from bench.world import build_world, prefeed

FLOOR_CODE = (
    "import fastapi, sqlalchemy.ext.asyncio, asyncpg, aio_pika, uvicorn, pydantic, pydantic_settings, structlog; "
    "import time; print('ready', flush=True); time.sleep(600)"
)


async def floor_rss() -> float | None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FLOOR_CODE, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        await process.stdout.readline()
        await asyncio.sleep(1)
        return rss_mib(process.pid)
    finally:
        process.terminate()
        await process.wait()


async def sample(processes: list[ServiceProcess], seconds: float) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {p.service: [] for p in processes}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for p in processes:
            value = p.rss()
            if value is not None:
                samples[p.service].append(value)
        await asyncio.sleep(0.5)
    return samples


async def search_load(url: str, token: str, stop: asyncio.Event, clients: int = 4) -> int:
    queries = [q for q in directory.query_mix() if q.text]
    done = 0

    async def client(index: int) -> None:
        nonlocal done
        rng = random.Random(index)
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            while not stop.is_set():
                query = rng.choice(queries)
                params: dict[str, Any] = {"q": query.text, "lang": query.language}
                if query.country:
                    params["country"] = query.country
                response = await http.get("/directory/authorities", params=params)
                response.raise_for_status()
                done += 1

    await asyncio.gather(*(client(i) for i in range(clients)))
    return done


async def run(infra: Infra, mode: Mode) -> Result:
    load_seconds = mode.pick(30.0, 10.0, 3.0)
    idle_seconds = mode.pick(6.0, 4.0, 1.5)
    authorities = mode.pick(1000, 300, 50)
    result = Result(
        "memory",
        "Memory (RSS) of each service idle and under the throughput load",
        mode.name,
        sizes={
            "load_seconds": load_seconds,
            "exchange_clients": 32,
            "directory_clients": 4,
            "directory_authorities": authorities,
        },
        target="none set: reported next to a bare Python process with the same imports",
        ratio_means="largest service RSS under load over the bare process's RSS",
    )
    databases = {
        service: await infra.create_database() for service in ("registry", "exchange", "notifier", "retention")
    }
    for service, url in databases.items():
        await migrate(service, url)
    log(f"memory: loading {authorities} authorities into the registry's directory")
    await directory.load(databases["registry"], authorities)
    from services.registry.directory import reindex_all
    from shared.database import create_engine, create_session_factory

    engine = create_engine(databases["registry"])
    async with create_session_factory(engine)() as session, session.begin():
        await reindex_all(session, directory.NOW)
    await engine.dispose()
    world = build_world(infra.tokens, authorities_per_country=4, handlers_per_authority=2)
    await prefeed("exchange", infra.settings(exchange_database_url=databases["exchange"]), world)
    await prefeed("notifier", infra.settings(notifier_database_url=databases["notifier"]), world)
    sink = SmtpSink(infra)
    sink.start()
    processes = [
        ServiceProcess(infra, "registry", databases["registry"], IMI_SIGNING_KEY=infra.tokens.private_pem),
        ServiceProcess(infra, "exchange", databases["exchange"]),
        ServiceProcess(
            infra,
            "notifier",
            databases["notifier"],
            IMI_SMTP_HOST="127.0.0.1",
            IMI_SMTP_PORT=str(sink.port),
            IMI_NOTIFIER_SEND_RATE="10000",
        ),
        ServiceProcess(infra, "retention", databases["retention"]),
    ]
    try:
        await sink.wait_ready()
        async with services_running(*processes):
            await asyncio.sleep(2)
            log("memory: idle")
            idle = await sample(processes, idle_seconds)
            log(f"memory: under load for {load_seconds:g} s")
            stop = asyncio.Event()
            searcher = world.users[0].token
            sampler = asyncio.create_task(sample(processes, load_seconds))
            searches = asyncio.create_task(search_load(processes[0].url, searcher, stop))
            run_ = await service_phase(processes[1].url, world, 32, 0.0, load_seconds)
            loaded = await sampler
            stop.set()
            searched = await searches
            with contextlib.suppress(Exception):
                await asyncio.sleep(1)
            after = {p.service: p.rss() for p in processes}
    finally:
        sink.stop()
    floor = await floor_rss()
    figures: dict[str, Any] = {}
    for p in processes:
        figures[p.service] = {
            "idle_mib": round(statistics.median(idle[p.service]), 1) if idle[p.service] else None,
            "under_load_peak_mib": max(loaded[p.service]) if loaded[p.service] else None,
            "under_load_last_mib": loaded[p.service][-1] if loaded[p.service] else None,
            "after_load_mib": after[p.service],
        }
    figures["load"] = {
        "requests_written_and_sent": run_.completed,
        "http_errors": run_.errors,
        "directory_searches": searched,
        "emails_received": len(sink.read()),
    }
    result.figures = figures
    result.floor = {"bare_python_with_imports_mib": floor}
    peak = max(figures[p.service]["under_load_peak_mib"] or 0 for p in processes)
    result.ratio = safe_ratio(peak, floor)
    result.headline = "; ".join(
        f"{p.service} {figures[p.service]['idle_mib']} -> {figures[p.service]['under_load_peak_mib']} MiB"
        for p in processes
    )
    result.floor_headline = f"bare Python + imports {floor} MiB"
    return result
