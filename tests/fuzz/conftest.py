"""Fixtures of the fuzz tests: each service built on its embedded default (tests/fuzz/targets.py),
started either by schemathesis in its own event-loop thread or by the test's own loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select

from tests.fuzz.targets import Target, build


def seeded_in_a_thread(target: Target) -> None:
    """Run the target's seeding on an event loop of its own, in a worker thread, so that neither
    pytest-asyncio's loop nor schemathesis's is touched."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, target.seed()).result()


@pytest.fixture(scope="module")
def seeded_target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A built and seeded service (``request.param`` names it), for schemathesis to reach as
    ``target.started_once``: started on first use in schemathesis's event-loop thread, stopped here."""
    name: str = request.param
    target = build(name, tmp_path_factory.mktemp(f"fuzz-{name}"))
    seeded_in_a_thread(target)
    yield target
    target.started_once.close()


@dataclass
class Running:
    """A service started in the test's event loop, with an HTTP client that carries no token."""

    target: Target
    client: httpx.AsyncClient

    @property
    def headers(self) -> dict[str, str]:
        return self.target.headers

    def id(self, name: str) -> str:
        """The id of something the seeding created (a path parameter's name: user_id…)."""
        return self.target.ids[name][0]

    async def outbox_size(self) -> int:
        """Events committed so far: every change of state in a service commits at least one."""
        outbox = self.target.runtime.definition.tables.outbox
        async with self.target.runtime.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(outbox)) or 0)


@pytest.fixture(scope="module")
async def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """The service ``request.param`` names (parametrize indirectly; or a pair of the name and
    settings to change), seeded and started in the module's event loop, once per module."""
    name, overrides = (request.param, {}) if isinstance(request.param, str) else request.param
    target = build(name, tmp_path_factory.mktemp(f"inputs-{name}"), **overrides)
    await target.seed()
    async with target.started() as client:
        yield Running(target, client)
