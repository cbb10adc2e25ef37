"""Real infrastructure for the tests: RabbitMQ and PostgreSQL from the environment
(``IMI_TEST_AMQP_URL``, ``IMI_TEST_DATABASE_URL``), else the local defaults on 127.0.0.1, else
testcontainers where a Docker engine runs. When none answers the test fails, saying what to start:
these tests are never skipped, on CI or anywhere else."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import aio_pika
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.support import wait_until

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def _answers(probe: Any, url: str) -> bool:
    """Run an async probe from sync code, even when an event loop is already running here."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return bool(pool.submit(asyncio.run, probe(url)).result())


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


async def _amqp_answers(url: str) -> bool:
    try:
        connection = await aio_pika.connect(url, timeout=3)
    except Exception:
        return False
    await connection.close()
    return True


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _postgres_answers(url: str) -> bool:
    try:
        connection = await asyncpg.connect(_asyncpg_dsn(url), timeout=3)
    except Exception:
        return False
    await connection.close()
    return True


@dataclass
class RabbitMQ:
    url: str
    container: Any = None

    def _ctl(self, *args: str) -> None:
        if self.container is not None:
            code, output = self.container.exec(["rabbitmqctl", *args])
            if code != 0:
                raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {output!r}")
            return
        if shutil.which("rabbitmqctl") is None:
            pytest.fail("restarting the broker needs rabbitmqctl on this machine (or a testcontainers broker)")
        subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)

    stopped: bool = False

    async def stop(self) -> None:
        """Stop the broker node (its queues survive on disk, connections are dropped)."""
        self.stopped = True
        await asyncio.to_thread(self._ctl, "stop_app")

    async def start(self) -> None:
        await asyncio.to_thread(self._ctl, "start_app")
        await wait_until(lambda: _amqp_answers(self.url), timeout=60, message="RabbitMQ did not come back")
        self.stopped = False

    def ensure_running(self) -> None:
        """After a test that failed with the broker stopped, bring it back for the next ones."""
        if self.stopped:
            self._ctl("start_app")
            self.stopped = False


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[RabbitMQ]:
    url = os.environ.get("IMI_TEST_AMQP_URL", DEFAULT_AMQP_URL)
    if _answers(_amqp_answers, url):
        broker = RabbitMQ(url)
        yield broker
        broker.ensure_running()
        return
    if _docker_available():
        from testcontainers.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:3.13") as container:
            params = container.get_connection_params()
            yield RabbitMQ(
                f"amqp://guest:guest@{params.host}:{params.port}/",
                container=container,
            )
        return
    pytest.fail(
        f"no RabbitMQ answers at {url} and no Docker engine runs: start RabbitMQ "
        "(`rabbitmq-server -detached`) or set IMI_TEST_AMQP_URL"
    )


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    url = os.environ.get("IMI_TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    if _answers(_postgres_answers, url):
        yield url
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver="asyncpg") as container:
            yield container.get_connection_url()
        return
    pytest.fail(
        f"no PostgreSQL answers at {url} and no Docker engine runs: start PostgreSQL "
        "(`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`) or set IMI_TEST_DATABASE_URL"
    )


class PostgresDatabases:
    """Creates throwaway databases on the test server and drops them afterwards."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.created: list[str] = []

    async def create(self) -> str:
        name = f"imi_t_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(_asyncpg_dsn(self.server_url))
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        self.created.append(name)
        return make_url(self.server_url).set(database=name).render_as_string(hide_password=False)

    async def drop_all(self) -> None:
        admin = await asyncpg.connect(_asyncpg_dsn(self.server_url))
        try:
            for name in self.created:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        self.created.clear()


@pytest.fixture(scope="module")
async def postgres(postgres_server_url: str) -> AsyncIterator[PostgresDatabases]:
    """Each test module gets databases of its own."""
    databases = PostgresDatabases(postgres_server_url)
    yield databases
    await databases.drop_all()


# The namespaces this test process handed out, so that what they left on the broker is removed.
_NAMESPACES: set[str] = set()


@pytest.fixture
def namespace() -> str:
    """Broker names of this test alone (exchange, queues), so tests never see each other's messages."""
    name = f"t{uuid.uuid4().hex[:10]}"
    _NAMESPACES.add(name)
    return name


async def _delete_broker_names(url: str, queues: list[str], exchanges: list[str]) -> None:
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)


@pytest.fixture(scope="session", autouse=True)
def broker_names_removed_at_the_end() -> Iterator[None]:
    """After the session, the queues and exchanges of this process's namespaces (services started
    by tests declare more than a test knows the names of) are deleted from the local RabbitMQ node,
    so runs do not pile them up on a shared broker. Only names of this process's namespaces: another
    process's tests may be running on the same node."""
    yield
    url = os.environ.get("IMI_TEST_AMQP_URL", DEFAULT_AMQP_URL)
    if not _NAMESPACES or shutil.which("rabbitmqctl") is None or not _answers(_amqp_answers, url):
        return
    prefixes = tuple(f"{name}." for name in _NAMESPACES)
    found = {}
    for kind in ("queues", "exchanges"):
        listed = subprocess.run(
            ["rabbitmqctl", f"list_{kind}", "-q", "--no-table-headers", "name"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        found[kind] = [line.strip() for line in listed.stdout.splitlines() if line.strip().startswith(prefixes)]
    if found["queues"] or found["exchanges"]:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, _delete_broker_names(url, found["queues"], found["exchanges"])).result()
