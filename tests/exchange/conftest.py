"""The exchange's tests' common fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.settings import Settings
from tests.exchange.world import ExchangeWorld, exchange_world


@pytest.fixture(params=["sqlite", "postgresql"])
async def world(request: pytest.FixtureRequest, tmp_path, postgres) -> AsyncIterator[ExchangeWorld]:  # type: ignore[no-untyped-def]
    """The exchange's world on both databases; a module may set ``WORLD_OPTIONS`` (keyword arguments
    of ``exchange_world``) or define a ``world`` of its own."""
    settings = Settings(data_dir=tmp_path)
    if request.param == "postgresql":
        settings = settings.model_copy(update={"exchange_database_url": await postgres.create()})
    async with exchange_world(settings, **getattr(request.module, "WORLD_OPTIONS", {})) as made:
        yield made
