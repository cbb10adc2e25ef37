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
from shared.auth import TokenVerifier
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


async def start_registry(
    settings: Settings, *, memory: bool, verifier: TokenVerifier | None = None
) -> tuple[FastAPI, FrozenClock, MemoryBroker | None]:
    await upgrade(load_definition("registry").migrations, settings.database_url("registry"))
    clock = FrozenClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    broker = MemoryBroker() if memory else None
    transport = MemoryTransport(broker) if broker is not None else None
    app = create_app("registry", settings, clock=clock, transport=transport, verifier=verifier)
    return app, clock, broker


@pytest.fixture
async def registry(tmp_path, request: pytest.FixtureRequest) -> AsyncIterator[RegistryUnderTest]:
    """The registry app; a test module may set ``registry_verifier`` to choose how tokens are read."""
    settings = Settings(data_dir=tmp_path, outbox_poll_interval=0.1)
    verifier_factory = getattr(request.module, "registry_verifier", None)
    verifier = verifier_factory(settings) if verifier_factory else None
    app, clock, broker = await start_registry(settings, memory=True, verifier=verifier)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
            yield RegistryUnderTest(app, client, clock, broker)


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id with its production cost takes a quarter of a second per password here; the tests
    register dozens of users, so they hash with the same algorithm at the lowest cost."""
    from argon2 import PasswordHasher

    from services.registry import security

    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(security, "_hasher", cheap)
    monkeypatch.setattr(security, "_DUMMY_HASH", cheap.hash("dummy-password"))
