"""The scheduler orders each due purge exactly once, in batches, through the outbox (rule P2); on
SQLite and on PostgreSQL; as a pass tests run after moving the clock, and as the service's own
background task."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select

from services.retention.models import messaging
from shared.contracts.retention import PURGE_ORDERED
from shared.settings import Settings
from tests.retention.conftest import OPS, START, RetentionUnderTest, serving_retention, settings_for
from tests.support import wait_until

SIX_MONTHS_LATER = START.replace(month=7)


async def scheduler_scenario(retention: RetentionUnderTest) -> None:
    """Three requests due, one closed later; batch size 2."""
    due = [uuid.uuid4() for _ in range(3)]
    later = uuid.uuid4()
    for hours, request in enumerate(due):
        await retention.feed("closed", request, 5, at=START + timedelta(hours=hours))
    await retention.feed("closed", later, 5, at=START + timedelta(days=10))

    retention.clock.travel(SIX_MONTHS_LATER + timedelta(hours=3) - START)
    result = await retention.run_pass()
    orders = await retention.orders()
    assert (result.orders_issued, len(orders)) == (2, 2)
    assert [len(order["request_ids"]) for order in orders] == [2, 1]
    ordered = [uuid.UUID(r) for order in orders for r in order["request_ids"]]
    assert sorted(ordered) == sorted(due)  # each due request exactly once; none closed later
    assert {order["attempt"] for order in orders} == {1}
    assert orders[0]["due_at"] == SIX_MONTHS_LATER.isoformat().replace("+00:00", "Z")
    for request in due:
        assert (await retention.status(request))["status"] == "ordered"
    assert (await retention.status(later))["status"] == "scheduled"

    # Before retention_resend_after (PT1H) another pass orders nothing new.
    retention.clock.travel(timedelta(minutes=59))
    result = await retention.run_pass()
    assert (result.orders_issued, result.orders_resent) == (0, 0)
    assert len(await retention.orders()) == 2


retention_settings = {"retention_batch_size": 2}


async def test_a_pass_past_the_deadline_orders_each_due_request_once_in_batches_rule_p2(
    retention: RetentionUnderTest,
):
    await scheduler_scenario(retention)


async def test_a_pass_past_the_deadline_orders_each_due_request_once_on_postgresql_rule_p2(postgres, tmp_path):
    url = await postgres.create()
    settings = settings_for(tmp_path, retention_database_url=url, retention_batch_size=2)
    async with serving_retention(settings) as retention:
        assert retention.runtime.engine.dialect.name == "postgresql"
        await scheduler_scenario(retention)


async def test_upcoming_purges_list_deadlines_within_the_period_rule_p2(retention: RetentionUnderTest):
    soon, later = uuid.uuid4(), uuid.uuid4()
    await retention.feed("closed", soon, 2, at=START - timedelta(days=170))  # due in 14 days
    await retention.feed("closed", later, 2, at=START)
    response = await retention.client.get("/retention/purges/upcoming", params={"within": "P30D"}, headers=OPS)
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 1
    assert [p["request_id"] for p in body["purges"]] == [str(soon)]
    whole_year = await retention.client.get("/retention/purges/upcoming", params={"within": "P1Y"}, headers=OPS)
    assert [p["request_id"] for p in whole_year.json()["purges"]] == [str(soon), str(later)]
    # Once ordered, a purge is no longer upcoming.
    retention.clock.travel(timedelta(days=15))
    await retention.run_pass()
    response = await retention.client.get("/retention/purges/upcoming", params={"within": "P30D"}, headers=OPS)
    assert response.json()["total"] == 0


async def test_a_request_shows_the_order_that_purges_it_rule_p2(retention: RetentionUnderTest):
    """The order the exchange received is the one the request's status names."""
    request = uuid.uuid4()
    await retention.feed("closed", request, 2, at=START - timedelta(days=200))
    await retention.run_pass()
    [order] = await retention.orders()
    status = await retention.status(request)
    assert [p["order_id"] for p in status["purges"]] == [order["order_id"]]


async def test_the_scheduler_runs_by_itself_as_a_background_task_rule_p2(tmp_path):
    settings: Settings = settings_for(tmp_path, retention_scan_interval=0.05)
    async with serving_retention(settings) as retention:
        request = uuid.uuid4()
        await retention.feed("closed", request, 2, at=START - timedelta(days=200))

        async def ordered() -> bool:
            return bool(await retention.orders())

        await wait_until(ordered, message="the background scheduler ordered no purge")
        [order] = await retention.orders()
        assert order["request_ids"] == [str(request)]

        async def published() -> bool:
            outbox = messaging.outbox
            async with retention.runtime.sessions() as session:
                rows = await session.scalars(
                    select(outbox.c.published_at).where(outbox.c.event_type == PURGE_ORDERED.name)
                )
                return all(row is not None for row in rows)

        await wait_until(published, message="the relay did not publish the purge order")


async def test_ops_run_a_pass_now_over_the_api_rule_p2(retention: RetentionUnderTest):
    request = uuid.uuid4()
    await retention.feed("closed", request, 5, at=START)
    retention.clock.travel(SIX_MONTHS_LATER + timedelta(hours=2) - START)
    refused = await retention.client.post("/retention/scheduler/run")
    assert refused.status_code == 401
    response = await retention.client.post("/retention/scheduler/run", headers=OPS)
    assert response.status_code == 200
    assert response.json()["orders_issued"] == 1
    assert (await retention.status(request))["status"] == "ordered"
