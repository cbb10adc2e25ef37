"""No personal data in the retention service's database (ARCHITECTURE.md, Personal data; rule P2):
every column of every table is an id, an instant, a count, or a short code or hash."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, get_args

import pytest
from sqlalchemy import BigInteger, DateTime, Integer, String, Uuid, inspect
from sqlalchemy.types import TypeDecorator

from services import load_definition
from services.retention.models import metadata
from shared.contracts.retention import PurgeOrder, PurgeOverdue
from shared.database import create_engine
from shared.migrations import upgrade

# The shared outbox and inbox hold this service's own events, whose contracts are checked below.
MESSAGING = {"outbox", "inbox"}
SHORT = 64  # the longest text a column may hold: codes, ISO 8601 periods, SHA-256 hex digests

EXPECTED: dict[str, dict[str, str]] = {
    "request_deadlines": {
        "request_id": "uuid",
        "version": "integer",
        "phase": "code",
        "last_event": "code",
        "basis": "code",
        "basis_at": "instant",
        "period": "code",
        "due_at": "instant",
        "order_id": "uuid",
        "updated_at": "instant",
    },
    "purge_orders": {
        "id": "uuid",
        "due_at": "instant",
        "issued_at": "instant",
        "attempt": "integer",
        "last_sent_at": "instant",
        "next_send_at": "instant",
        "request_count": "integer",
        "confirmed_count": "integer",
        "completed_at": "instant",
    },
    "purge_items": {
        "order_id": "uuid",
        "request_id": "uuid",
        "due_at": "instant",
        "purged_at": "instant",
        "confirmed_at": "instant",
        "deleted_count": "integer",
        "overdue_reported_at": "instant",
        "not_purged": "code",
    },
    "purge_log": {
        "seq": "integer",
        "kind": "code",
        "order_id": "uuid",
        "request_id": "uuid",
        "due_at": "instant",
        "occurred_at": "instant",
        "recorded_at": "instant",
        "attempt": "integer",
        "deleted_count": "integer",
        "prev_hash": "code",
        "hash": "code",
    },
    "purge_log_head": {"id": "integer", "seq": "integer", "hash": "code"},
}


def storage_type(column_type: Any) -> Any:
    return column_type.impl if isinstance(column_type, TypeDecorator) else column_type


def kind_of(column_type: Any) -> str:
    """What a column can hold; anything that could carry free text or a document is refused."""
    if isinstance(column_type, Uuid):
        return "uuid"
    if isinstance(column_type, DateTime):
        return "instant"
    if isinstance(column_type, Integer | BigInteger):
        return "integer"
    if isinstance(column_type, String) and column_type.length is not None and column_type.length <= SHORT:
        return "code"
    return f"refused: {column_type!r}"


def test_every_retention_column_holds_only_ids_instants_counts_or_codes():
    found = {
        table.name: {column.name: kind_of(storage_type(column.type)) for column in table.columns}
        for table in metadata.sorted_tables
        if table.name not in MESSAGING
    }
    assert found == EXPECTED


async def test_the_migrated_database_has_exactly_these_tables_and_columns(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'retention.db'}"
    await upgrade(load_definition("retention").migrations, url)
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:

            def columns(sync_connection):  # type: ignore[no-untyped-def]
                inspector = inspect(sync_connection)
                return {
                    name: {column["name"] for column in inspector.get_columns(name)}
                    for name in inspector.get_table_names()
                    if name not in MESSAGING | {"alembic_version"}
                }

            found = await connection.run_sync(columns)
    finally:
        await engine.dispose()
    assert found == {name: set(cols) for name, cols in EXPECTED.items()}


@pytest.mark.parametrize("contract", [PurgeOrder, PurgeOverdue])
def test_the_events_retention_publishes_carry_only_ids_instants_and_counts(contract):
    allowed = {uuid.UUID, datetime, int}
    for name, field in contract.model_fields.items():
        annotation = field.annotation
        types = set(get_args(annotation)) or {annotation}
        assert types <= allowed, f"{contract.__name__}.{name} is {annotation}"
