"""The `imi` command as a newcomer and an ops engineer use it."""

from __future__ import annotations

import asyncio
import mailbox
import os
import signal
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import aio_pika
import aiosmtplib
import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from services.cli import app
from shared.bus.amqp import AmqpTransport
from shared.bus.bus import EventBus
from shared.bus.topology import ServiceQueues
from shared.settings import DEFAULT_PORTS, SERVICES, Settings
from tests.foundation.test_bus_contract import Recorder, probe
from tests.support import (
    PROBE_SENT,
    delete_namespace,
    free_port,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
IMI = [sys.executable, "-m", "services"]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMI_")}
    return {**env, **extra}


@pytest.mark.serial  # the default ports, and a 15-second limit
async def test_imi_up_serves_four_ready_services_within_15_seconds_and_stops_on_ctrl_c(tmp_path):
    process = await asyncio.create_subprocess_exec(
        *IMI,
        "up",
        "--data-dir",
        str(tmp_path / "data"),
        cwd=ROOT,
        env=_clean_env(PYTHONPATH=str(ROOT)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=2) as client:

            async def all_ready() -> bool:
                try:
                    answers = [await client.get(f"http://127.0.0.1:{DEFAULT_PORTS[s]}/health/ready") for s in SERVICES]
                except httpx.TransportError:
                    return False
                return all(a.status_code == 200 for a in answers)

            await wait_until(all_ready, timeout=15, interval=0.2, message="four ready services")
        assert time.monotonic() - started < 15

        # The local SMTP sink keeps what it receives as a Maildir in the data directory.
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@example.org", "b@example.org", "sink check"
        message.set_content("hello")
        await aiosmtplib.send(message, hostname="127.0.0.1", port=1025)
        maildir = mailbox.Maildir(tmp_path / "data" / "mail", create=False)
        await wait_until(lambda: len(maildir) == 1, message="mail kept")
        assert next(iter(maildir))["Subject"] == "sink check"
        assert {p.name for p in (tmp_path / "data").glob("*.db")} == {f"{s}.db" for s in SERVICES}

        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_imi_up_runs_the_same_services_on_rabbitmq_and_postgresql(tmp_path, rabbitmq, postgres, namespace):
    """Item 10: with IMI_BROKER_URL and the database URLs set, `imi up` runs on them (on other
    ports than the defaults, through tests/support/up_on_ports.py, beside a developer's `imi up`)."""
    ports = {service: free_port() for service in SERVICES}
    databases = {service: await postgres.create() for service in SERVICES}
    log = tmp_path / "up.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.up_on_ports",
            "up",
            "--data-dir",
            str(tmp_path / "data"),
            cwd=ROOT,
            env=_clean_env(
                PYTHONPATH=str(ROOT),
                IMI_TEST_PORTS=",".join(f"{service}={port}" for service, port in ports.items()),
                IMI_BROKER_URL=rabbitmq.url,
                IMI_BUS_NAMESPACE=namespace,
                IMI_SMTP_PORT=str(free_port()),
                **{f"IMI_{service.upper()}_DATABASE_URL": url for service, url in databases.items()},
            ),
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(timeout=5) as client:

            async def readiness() -> list[dict[str, object]] | None:
                try:
                    answers = [await client.get(f"http://127.0.0.1:{ports[s]}/health/ready") for s in SERVICES]
                except httpx.TransportError:
                    return None
                return [a.json() for a in answers] if all(a.status_code == 200 for a in answers) else None

            try:
                ready = await wait_until(readiness, timeout=60, interval=0.3, message="four ready services")
            except AssertionError:
                raise AssertionError(log.read_text(errors="replace")[-4000:]) from None
        assert [answer["service"] for answer in ready] == list(SERVICES)
        assert all(answer["checks"]["broker"] == "ok" for answer in ready)  # type: ignore[index]
        # On PostgreSQL, not SQLite files in the data directory; on RabbitMQ, not the memory broker.
        assert not list((tmp_path / "data").glob("*.db"))
        for service, url in databases.items():
            connection = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
            try:
                assert await connection.fetchval("SELECT count(*) FROM alembic_version") == 1, service
            finally:
                await connection.close()
        amqp = await aio_pika.connect(rabbitmq.url)
        async with amqp:
            channel = await amqp.channel()
            for service in SERVICES:
                await channel.declare_queue(f"{namespace}.{service}", passive=True)  # raises if it is not there

        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        default_delays = Settings.model_fields["bus_retry_delays"].get_default(call_default_factory=True)
        await delete_namespace(rabbitmq.url, namespace, default_delays)


def test_imi_migrate_creates_every_service_database(tmp_path, monkeypatch):
    monkeypatch.setenv("IMI_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["migrate"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in tmp_path.glob("*.db")} == {f"{s}.db" for s in SERVICES}


def test_imi_refuses_an_unknown_service(monkeypatch, tmp_path):
    monkeypatch.setenv("IMI_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["migrate", "billing"])
    assert result.exit_code == 2
    assert "unknown service" in result.output


def test_imi_serve_refuses_unsafe_production_configuration(monkeypatch):
    monkeypatch.setenv("IMI_ENVIRONMENT", "production")
    monkeypatch.setenv("IMI_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
    result = CliRunner().invoke(app, ["serve", "exchange"])
    assert result.exit_code == 2
    assert "IMI_EXCHANGE_DATABASE_URL" in result.output


def test_imi_keys_generate_prints_the_three_key_variables():
    result = CliRunner().invoke(app, ["keys", "generate"])
    assert result.exit_code == 0
    names = [line.split("=", 1)[0] for line in result.output.splitlines()]
    assert names == ["IMI_SIGNING_KEY", "IMI_SEALING_PRIVATE_KEY", "IMI_SEALING_PUBLIC_KEY", "IMI_SECURITY_CODE_KEY"]


def test_imi_dlq_tells_that_the_memory_broker_is_only_inside_imi_up(monkeypatch):
    monkeypatch.setenv("IMI_BROKER_URL", "memory://")
    result = CliRunner().invoke(app, ["dlq", "list", "notifier"])
    assert result.exit_code == 2
    assert "amqp://" in result.output


@pytest.fixture
async def dead_letter(rabbitmq, namespace):
    delays = (0.05,)
    bus = EventBus(AmqpTransport(rabbitmq.url), ServiceQueues(namespace, "notifier", delays))
    await bus.start()
    recorder = Recorder(fail_on={"poison"})
    await bus.subscribe({PROBE_SENT.name}, recorder)
    await bus.publish(probe("poison"))
    await wait_until(lambda: bus.transport.message_count(bus.queues.dead_letter_queue), message="dead letter")
    await bus.stop_consuming()
    yield bus
    await bus.stop()
    await delete_namespace(rabbitmq.url, namespace, delays)


async def test_imi_dlq_lists_dead_letters_and_replays_them(dead_letter, rabbitmq, namespace, monkeypatch):
    monkeypatch.setenv("IMI_BROKER_URL", rabbitmq.url)
    monkeypatch.setenv("IMI_BUS_NAMESPACE", namespace)
    monkeypatch.setenv("IMI_BUS_RETRY_DELAYS", "[0.05]")
    queues = dead_letter.queues

    listed = await asyncio.to_thread(CliRunner().invoke, app, ["dlq", "list", "notifier", "--json"])
    assert listed.exit_code == 0, listed.output
    assert PROBE_SENT.name in listed.output and "cannot handle poison" in listed.output
    assert await dead_letter.transport.message_count(queues.dead_letter_queue) == 1  # listing took nothing

    replayed = await asyncio.to_thread(CliRunner().invoke, app, ["dlq", "replay", "notifier"])
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1" in replayed.output
    assert await dead_letter.transport.message_count(queues.dead_letter_queue) == 0
    await wait_until(lambda: _count_is(dead_letter, queues.queue, 1), message="back in the service's queue")


async def _count_is(bus: EventBus, queue: str, expected: int) -> bool:
    return await bus.transport.message_count(queue) == expected
