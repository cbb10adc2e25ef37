"""A registry service for tests: migrated SQLite database, memory broker, frozen clock; or, with
``registry_on_postgres``, PostgreSQL and RabbitMQ."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI

from services import create_app, load_definition
from shared.bus.memory import MemoryBroker, MemoryTransport
from shared.clock import FrozenClock
from shared.migrations import upgrade
from shared.service import ServiceRuntime
from shared.settings import Settings


@dataclass
class RegistryUnderTest:
    app: FastAPI
    client: httpx.AsyncClient
    clock: FrozenClock
    broker: MemoryBroker | None

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime


async def start_registry(settings: Settings, *, memory: bool) -> tuple[FastAPI, FrozenClock, MemoryBroker | None]:
    await upgrade(load_definition("registry").migrations, settings.database_url("registry"))
    clock = FrozenClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    broker = MemoryBroker() if memory else None
    transport = MemoryTransport(broker) if broker is not None else None
    app = create_app("registry", settings, clock=clock, transport=transport)
    return app, clock, broker


@pytest.fixture
async def registry(tmp_path) -> AsyncIterator[RegistryUnderTest]:
    settings = Settings(data_dir=tmp_path, outbox_poll_interval=0.1)
    app, clock, broker = await start_registry(settings, memory=True)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
            yield RegistryUnderTest(app, client, clock, broker)
