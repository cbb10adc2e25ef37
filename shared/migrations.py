"""Alembic, one migration history per service, run with ``imi migrate [SERVICE]``.

Each service's ``migrations/env.py`` calls :func:`run_env` with its metadata; :func:`upgrade`
runs a service's history against a database URL from code (the CLI, ``imi up``, the tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from shared.database import create_engine, is_sqlite


def alembic_config(migrations: Path, url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(migrations: Path, url: str, revision: str = "head") -> None:
    """Bring one service's database to ``revision`` (Alembic runs in a thread with its own loop)."""
    await asyncio.to_thread(command.upgrade, alembic_config(migrations, url), revision)


def managed_names(metadata: MetaData) -> Callable[[str | None, str, Any], bool]:
    """An Alembic ``include_name`` that leaves alone the tables a service lists in
    ``metadata.info["unmanaged_tables"]`` (created by hand-written, dialect-specific DDL)."""
    unmanaged = set(metadata.info.get("unmanaged_tables", ()))

    def include(name: str | None, type_: str, _: Any) -> bool:
        return not (type_ == "table" and name in unmanaged)

    return include


def _run(connection: Connection, metadata: MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=managed_names(metadata),
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(url: str, metadata: MetaData) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run, metadata)
            await connection.commit()
    finally:
        await engine.dispose()


def run_env(metadata: MetaData) -> None:
    """The body of every service's ``env.py``."""
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        from shared.settings import Settings

        raise SystemExit(f"no database URL given; run `imi migrate` (settings: {Settings().data_dir})")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(url, metadata))


def create_messaging_tables() -> None:
    """The outbox and inbox of :func:`shared.outbox.messaging_tables`, for a service's first migration."""
    from alembic import op

    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["seq"],
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])
    op.create_table(
        "inbox",
        sa.Column("event_id", sa.Uuid(), primary_key=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_inbox_processed_at", "inbox", ["processed_at"])


__all__ = ["alembic_config", "create_messaging_tables", "is_sqlite", "run_env", "upgrade"]
