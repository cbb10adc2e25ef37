"""The purge log is tamper-evident (rule P2): its hash chain verifies, and any entry altered or
deleted in the database is detected, the endpoint naming the first broken sequence number."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from services.retention import purge_log
from services.retention.models import PurgeLogEntry
from tests.retention.conftest import OPS, START, RetentionUnderTest


async def four_entries(retention: RetentionUnderTest) -> None:
    """Seq 1-2: an order of two requests; seq 3-4: their confirmations."""
    requests = [uuid.uuid4(), uuid.uuid4()]
    for request in requests:
        await retention.feed("closed", request, 4, at=START.replace(year=2025, month=7))
    await retention.run_pass()
    [order] = await retention.orders()
    for request in order["request_ids"]:
        await retention.confirm(uuid.UUID(order["order_id"]), uuid.UUID(request))


async def verify(retention: RetentionUnderTest) -> dict:  # type: ignore[type-arg]
    response = await retention.client.get("/retention/log/verify", headers=OPS)
    assert response.status_code == 200
    body: dict = response.json()  # type: ignore[type-arg]
    return body


async def tamper(retention: RetentionUnderTest, sql: str) -> None:
    async with retention.runtime.engine.begin() as connection:
        result = await connection.execute(text(sql))
        assert result.rowcount == 1  # type: ignore[attr-defined]


async def test_the_purge_log_chain_verifies_rule_p2(retention: RetentionUnderTest):
    assert (await verify(retention))["intact"] is True  # the empty log too
    await four_entries(retention)
    result = await verify(retention)
    assert result == {
        "intact": True,
        "entries": 4,
        "head_seq": 4,
        "head_hash": result["head_hash"],
        "first_broken": None,
    }
    assert len(result["head_hash"]) == 64


@pytest.mark.parametrize(
    "change",
    [
        "deleted_count = 0",
        "kind = 'confirmed'",
        "request_id = order_id",
        "due_at = NULL",
        "occurred_at = '2026-01-14 09:00:00.000000'",
        "attempt = 7",
        "hash = prev_hash",
        "prev_hash = hash",
    ],
)
async def test_altering_any_entry_is_detected_and_named_rule_p2(retention: RetentionUnderTest, change):
    await four_entries(retention)
    await tamper(retention, f"UPDATE purge_log SET {change} WHERE seq = 2")
    result = await verify(retention)
    assert result["intact"] is False
    assert result["first_broken"] == {"seq": 2, "reason": "content_altered"}


async def test_an_altered_entry_given_a_fresh_hash_breaks_the_next_link_rule_p2(retention: RetentionUnderTest):
    await four_entries(retention)
    async with retention.runtime.sessions() as session, session.begin():
        entry = await session.scalar(select(PurgeLogEntry).where(PurgeLogEntry.seq == 3))
        assert entry is not None
        entry.deleted_count = 0
        entry.hash = purge_log.entry_hash(entry)
    assert (await verify(retention))["first_broken"] == {"seq": 4, "reason": "chain_broken"}


@pytest.mark.parametrize("seq", [1, 2, 4])
async def test_deleting_any_entry_is_detected_and_named_rule_p2(retention: RetentionUnderTest, seq):
    await four_entries(retention)
    await tamper(retention, f"DELETE FROM purge_log WHERE seq = {seq}")
    result = await verify(retention)
    assert result["intact"] is False
    assert result["first_broken"] == {"seq": seq, "reason": "missing"}
    assert result["entries"] == 3


def _instant(value: str | None) -> str | None:
    if value is None:
        return None
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_an_exported_log_can_be_verified_without_the_service_rule_p2(retention: RetentionUnderTest):
    """The chain format documented in purge_log.py, recomputed from the export with hashlib alone."""
    await four_entries(retention)
    response = await retention.client.get("/retention/log", params={"after": 0, "limit": 10}, headers=OPS)
    entries = response.json()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert [e["kind"] for e in entries] == ["ordered", "ordered", "confirmed", "confirmed"]
    previous = "0" * 64
    for entry in entries:
        content = {
            **{key: entry[key] for key in ("seq", "kind", "order_id", "request_id", "attempt", "deleted_count")},
            **{key: _instant(entry[key]) for key in ("due_at", "occurred_at", "recorded_at")},
            "prev_hash": previous,
        }
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
        assert hashlib.sha256(canonical).hexdigest() == entry["hash"]
        previous = entry["hash"]
    assert previous == (await verify(retention))["head_hash"]
    later = await retention.client.get("/retention/log", params={"after": 3}, headers=OPS)
    assert [e["seq"] for e in later.json()] == [4]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("after=-1", "query.after"),
        ("after=abc", "query.after"),
        ("limit=0", "query.limit"),
        ("limit=5001", "query.limit"),
    ],
)
async def test_a_bad_export_range_is_refused_naming_the_field(retention: RetentionUnderTest, query, field):
    response = await retention.client.get(f"/retention/log?{query}", headers=OPS)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field
