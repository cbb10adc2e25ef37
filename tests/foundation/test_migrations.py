"""Each service's Alembic history builds exactly the schema its models declare, on SQLite and on
PostgreSQL, so ``imi migrate`` and the code never disagree."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from services import load_definition
from shared.database import create_engine
from shared.migrations import managed_names, upgrade
from shared.settings import SERVICES


async def _differences(url: str, service: str) -> list[object]:
    definition = load_definition(service)
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:

            def compare(sync_connection):  # type: ignore[no-untyped-def]
                options = {"compare_type": True, "include_name": managed_names(definition.metadata)}
                context = MigrationContext.configure(sync_connection, opts=options)
                return compare_metadata(context, definition.metadata)

            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_build_the_models_schema_on_sqlite(service, tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / f'{service}.db'}"
    await upgrade(load_definition(service).migrations, url)
    assert {"outbox", "inbox", "alembic_version"} <= await _tables(url)
    assert await _differences(url, service) == []


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_build_the_models_schema_on_postgresql(service, postgres):
    url = await postgres.create()
    await upgrade(load_definition(service).migrations, url)
    await upgrade(load_definition(service).migrations, url)  # running again changes nothing
    assert await _differences(url, service) == []
