"""Confirmations of purge orders (rule P2): a lost one is re-ordered with growing waits until it
arrives; one for an order never given is recorded and harmless; a duplicate changes nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select

from services.retention.models import LogKind, PurgeLogEntry
from tests.retention.conftest import OPS, START, RetentionUnderTest

RESEND_AFTER = timedelta(hours=1)  # the default retention_resend_after, PT1H


async def log_kinds(retention: RetentionUnderTest) -> list[str]:
    async with retention.runtime.sessions() as session:
        return list(await session.scalars(select(PurgeLogEntry.kind).order_by(PurgeLogEntry.seq)))


async def due_request(retention: RetentionUnderTest) -> uuid.UUID:
    """A request whose deadline is now: closed six months ago."""
    request = uuid.uuid4()
    await retention.feed("closed", request, 4, at=START.replace(year=2025, month=7))
    return request


async def test_a_lost_confirmation_is_ordered_again_with_backoff_until_confirmed_rule_p2(
    retention: RetentionUnderTest,
):
    request = await due_request(retention)
    await retention.run_pass()
    [first] = await retention.orders()
    assert first["attempt"] == 1

    retention.clock.travel(RESEND_AFTER - timedelta(seconds=1))
    await retention.run_pass()
    assert len(await retention.orders()) == 1
    retention.clock.travel(timedelta(seconds=1))
    await retention.run_pass()
    second = (await retention.orders())[-1]
    assert (second["order_id"], second["attempt"], second["request_ids"]) == (first["order_id"], 2, [str(request)])

    # The wait doubles: attempt 3 comes twice resend_after after attempt 2.
    retention.clock.travel(2 * RESEND_AFTER - timedelta(seconds=1))
    await retention.run_pass()
    assert len(await retention.orders()) == 2
    retention.clock.travel(timedelta(seconds=1))
    await retention.run_pass()
    third = (await retention.orders())[-1]
    assert (third["order_id"], third["attempt"]) == (first["order_id"], 3)

    await retention.confirm(uuid.UUID(first["order_id"]), request, deleted={"answers": 2, "attachments": 1})
    status = await retention.status(request)
    assert status["status"] == "purged"
    assert status["purges"][0]["deleted_count"] == 3
    assert status["purges"][0]["attempts"] == 3
    retention.clock.travel(timedelta(days=30))
    result = await retention.run_pass()
    assert (result.orders_resent, result.pending, result.overdue) == (0, 0, 0)
    assert len(await retention.orders()) == 3
    assert await log_kinds(retention) == ["ordered", "reordered", "reordered", "confirmed"]


async def test_an_order_is_sent_again_only_for_the_requests_not_confirmed_rule_p2(retention: RetentionUnderTest):
    confirmed, lost = await due_request(retention), await due_request(retention)
    await retention.run_pass()
    [order] = await retention.orders()
    await retention.confirm(uuid.UUID(order["order_id"]), confirmed)
    retention.clock.travel(RESEND_AFTER)
    await retention.run_pass()
    again = (await retention.orders())[-1]
    assert (again["order_id"], again["request_ids"], again["attempt"]) == (order["order_id"], [str(lost)], 2)


async def test_a_confirmation_for_an_unknown_order_is_recorded_but_harmless(retention: RetentionUnderTest):
    request = await due_request(retention)
    stranger_order, stranger_request = uuid.uuid4(), uuid.uuid4()
    await retention.confirm(stranger_order, stranger_request)
    await retention.confirm(stranger_order, stranger_request)  # published again: recorded once
    async with retention.runtime.sessions() as session:
        entries = list(await session.scalars(select(PurgeLogEntry)))
    assert [(e.kind, e.order_id, e.request_id, e.deleted_count) for e in entries] == [
        (LogKind.unmatched_confirmation, stranger_order, stranger_request, 4)
    ]
    # Nothing else moved: the known request is still ordered normally, the report counts no purge.
    await retention.run_pass()
    assert [o["request_ids"] for o in await retention.orders()] == [[str(request)]]
    assert (await retention.status(request))["status"] == "ordered"
    report = (await retention.client.get("/retention/report", headers=OPS)).json()
    assert report["purges_per_month"] == []
    assert report["log"]["intact"] is True


async def test_a_confirmation_of_a_request_outside_the_order_is_not_taken_for_it(retention: RetentionUnderTest):
    request = await due_request(retention)
    await retention.run_pass()
    [order] = await retention.orders()
    await retention.confirm(uuid.UUID(order["order_id"]), uuid.uuid4())
    assert (await retention.status(request))["status"] == "ordered"


async def test_a_duplicate_confirmation_changes_nothing(retention: RetentionUnderTest):
    request = await due_request(retention)
    await retention.run_pass()
    [order] = await retention.orders()
    confirmation = await retention.confirm(uuid.UUID(order["order_id"]), request)
    before = await retention.status(request)
    retention.clock.travel(timedelta(hours=5))
    assert await retention.deliver(confirmation) is False  # the same delivery: the inbox skips it
    await retention.confirm(uuid.UUID(order["order_id"]), request, deleted={"answers": 0})  # sent again
    assert await retention.status(request) == before
    assert await log_kinds(retention) == ["ordered", "confirmed"]
    await retention.run_pass()
    assert len(await retention.orders()) == 1
