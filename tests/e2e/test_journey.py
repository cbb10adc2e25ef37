"""The whole guide, end to end (issue 7): the four services as separate processes over real
RabbitMQ, PostgreSQL and an SMTP server on loopback; the journey of services/journey.py, once as
is and once with approval of requests and replies; and at the end no trace of the professional's
personal data in any service's database."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import BinaryIO

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox

from services.journey import Endpoints, Journey, Maildir, text_of
from services.registry.bootstrap import CoordinatorSpec, bootstrap_database
from shared.bus.amqp import AmqpTransport
from shared.bus.topology import ServiceQueues
from shared.settings import SERVICES, Settings
from tests.conftest import _asyncpg_dsn
from tests.support import delete_namespace, wait_until

ROOT = Path(__file__).resolve().parents[2]
# The ASCII part of the professional's name (services.journey.SUBJECT_MARKER): JSON logs escape the "Ó".
MARKER = "Briain-Marker"


def log_file(path: Path) -> BinaryIO:
    return path.open("wb")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def system(
    tmp_path: Path, rabbitmq, postgres, namespace: str
) -> AsyncIterator[tuple[Endpoints, Maildir, Settings]]:  # type: ignore[no-untyped-def]
    maildir = tmp_path / "mail"
    smtp = Controller(Mailbox(maildir), hostname="127.0.0.1", port=free_port())
    smtp.start()
    ports = {service: free_port() for service in SERVICES}
    databases = {service: await postgres.create() for service in SERVICES}
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMI_")}
    env.update(
        IMI_ENVIRONMENT="development",
        IMI_DATA_DIR=str(tmp_path / "data"),
        IMI_BROKER_URL=rabbitmq.url,
        IMI_BUS_NAMESPACE=namespace,
        IMI_BUS_RETRY_DELAYS="[0.5, 1]",
        IMI_OUTBOX_POLL_INTERVAL="0.5",
        IMI_REGISTRY_URL=f"http://127.0.0.1:{ports['registry']}",
        IMI_SMTP_PORT=str(smtp.port),
        IMI_RETENTION_SCAN_INTERVAL="1",
        IMI_LOG_FORMAT="json",
        **{f"IMI_{s.upper()}_DATABASE_URL": url for s, url in databases.items()},
    )
    logs = {}
    processes = []
    for service in SERVICES:
        logs[service] = log_file(tmp_path / f"{service}.log")
        processes.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services",
                "serve",
                service,
                "--migrate",
                cwd=ROOT,
                env={**env, "IMI_HTTP_PORT": str(ports[service])},
                stdout=logs[service],
                stderr=asyncio.subprocess.STDOUT,
            )
        )
    endpoints = Endpoints(*(f"http://127.0.0.1:{ports[s]}" for s in SERVICES))
    settings = Settings(data_dir=tmp_path / "data", registry_database_url=databases["registry"])
    try:
        async with httpx.AsyncClient(timeout=2) as client:

            async def ready() -> bool:
                urls = (endpoints.registry, endpoints.exchange, endpoints.notifier, endpoints.retention)
                try:
                    answers = [await client.get(f"{url}/health/ready") for url in urls]
                except httpx.TransportError:
                    return False
                return all(answer.status_code == 200 for answer in answers)

            await wait_until(ready, timeout=60, interval=0.3, message="four services ready")
        yield endpoints, Maildir(maildir), settings
        # No trace of the purged personal data: not in any database, queue or log (rule P2, issue 9).
        for service, url in databases.items():
            assert not await marker_in_database(url), f"personal data left in the {service} database"
        assert not await marker_in_queues(rabbitmq.url, namespace), "personal data left in a queue"
        for service in SERVICES:
            logs[service].flush()
            assert MARKER not in (tmp_path / f"{service}.log").read_text(errors="replace"), service
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
        for log in logs.values():
            log.close()
        smtp.stop()
        await delete_namespace(rabbitmq.url, namespace, [0.5, 1])


async def marker_in_database(url: str) -> bool:
    """Every row of every table, as text, searched for the professional's name."""
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        tables = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for table in tables:
            found = await connection.fetchval(
                f'SELECT count(*) FROM "{table["tablename"]}" t WHERE t::text LIKE $1', f"%{MARKER}%"
            )
            if found:
                return True
        return False
    finally:
        await connection.close()


async def marker_in_queues(amqp_url: str, namespace: str) -> bool:
    """Every message still in any of the system's queues, read without taking it."""
    transport = AmqpTransport(amqp_url)
    await transport.start()
    try:
        assert await transport.wait_connected(10)
        for service in SERVICES:
            queues = ServiceQueues(namespace, service, (0.5, 1))
            names = [queues.queue, queues.dead_letter_queue, queues.retry_queue(1), queues.retry_queue(2)]
            for name in names:
                try:
                    messages = await transport.browse(name, 10_000)
                except Exception:  # a queue that was never declared holds nothing
                    continue
                if any(MARKER.encode() in m.body for m in messages):
                    return True
        return False
    finally:
        await transport.stop()


def journey_for(endpoints: Endpoints, maildir: Maildir, settings: Settings, *, approvals: bool) -> Journey:
    async def bootstrap(coordinators: list[tuple[str, str]], commission_email: str) -> dict[str, str]:
        created = await bootstrap_database(
            settings,
            commission_email=commission_email,
            coordinators=[CoordinatorSpec(country, email) for country, email in coordinators],
        )
        return {entry.country: entry.username for entry in created}

    return Journey(endpoints, maildir, bootstrap, say=lambda _line: None, approvals=approvals, timeout=60)


@pytest.mark.parametrize("approvals", [False, True], ids=["as-is", "with-approvals"])
async def test_the_guide_end_to_end_across_the_four_services(tmp_path, rabbitmq, postgres, namespace, approvals):
    async with system(tmp_path, rabbitmq, postgres, namespace) as (endpoints, maildir, settings):
        journey = journey_for(endpoints, maildir, settings, approvals=approvals)
        result = await journey.run_all()

        alert = result.mails["allocator:request_received"]
        assert result.reference in str(alert["Subject"])
        assert alert["Content-Language"] in (None, "ro") or "ro" in str(alert["Content-Language"])
        assert "cerere" in (str(alert["Subject"]) + text_of(alert)).lower()  # Romanian, as the allocator chose
        for key, account in result.accounts.items():
            mail = result.mails.get(f"{key}:temporary_password")
            if mail is not None:
                assert account.username not in text_of(mail)  # rule S11
        for message in maildir.messages():
            assert MARKER not in str(message)  # no personal data in any e-mail

        after = await journey.six_months_later(result.request_id)
        assert after["status"]["status"] == "purged"
        assert after["view"]["personal_data_purged"] is True
        assert after["verification"]["intact"] is True
