"""An overdue purge (unconfirmed past its deadline plus retention_overdue_after) is visible in the
API and the gauges, and reported once to ops as retention.purge.overdue.v1 (rule P2)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tests.retention.conftest import OPS, START, RetentionUnderTest

OVERDUE_AFTER = timedelta(days=1)  # the default retention_overdue_after, P1D
DUE_AT = START + timedelta(hours=1)


def gauge(retention: RetentionUnderTest, name: str) -> float | None:
    return retention.runtime.metrics.registry.get_sample_value(name)


async def overdue_listing(retention: RetentionUnderTest) -> dict:  # type: ignore[type-arg]
    response = await retention.client.get("/retention/purges/overdue", headers=OPS)
    assert response.status_code == 200
    body: dict = response.json()  # type: ignore[type-arg]
    return body


async def test_an_overdue_purge_is_listed_counted_and_reported_once_rule_p2(retention: RetentionUnderTest):
    request = uuid.uuid4()
    await retention.feed("closed", request, 4, at=datetime(2025, 7, 15, 10, 0, tzinfo=UTC))  # due at DUE_AT
    retention.clock.travel(timedelta(hours=2))
    await retention.run_pass()
    [order] = await retention.orders()
    assert gauge(retention, "imi_retention_pending_purges") == 1
    assert gauge(retention, "imi_retention_overdue_purges") == 0

    retention.clock.travel(DUE_AT + OVERDUE_AFTER - timedelta(seconds=1) - retention.clock.now())
    await retention.run_pass()
    assert await retention.overdue_events() == []
    assert (await overdue_listing(retention))["count"] == 0
    assert gauge(retention, "imi_retention_overdue_purges") == 0

    retention.clock.travel(timedelta(seconds=1))
    await retention.run_pass()
    assert await retention.overdue_events() == [
        {"order_id": order["order_id"], "request_id": str(request), "due_at": order["due_at"], "attempts": 2}
    ]
    listing = await overdue_listing(retention)
    assert listing["count"] == 1
    assert listing["purges"][0]["order_id"] == order["order_id"]
    assert listing["purges"][0]["request_id"] == str(request)
    assert gauge(retention, "imi_retention_overdue_purges") == 1
    assert (await retention.status(request))["status"] == "overdue"

    for _ in range(3):
        retention.clock.travel(timedelta(hours=5))
        await retention.run_pass()
    assert len(await retention.overdue_events()) == 1  # once per request and order, not once per pass
    assert gauge(retention, "imi_retention_overdue_purges") == 1
    assert "imi_retention_overdue_purges 1.0" in (await retention.client.get("/metrics")).text

    await retention.confirm(uuid.UUID(order["order_id"]), request)
    await retention.run_pass()
    assert gauge(retention, "imi_retention_overdue_purges") == 0
    assert gauge(retention, "imi_retention_pending_purges") == 0
    assert (await overdue_listing(retention))["count"] == 0
    assert (await retention.status(request))["status"] == "purged"


async def test_a_deadline_the_scheduler_never_ordered_is_overdue_too_rule_p2(retention: RetentionUnderTest):
    """If the scheduler stops, the API still shows what is late (and orders nothing by itself)."""
    request = uuid.uuid4()
    await retention.feed("closed", request, 4, at=datetime(2025, 6, 1, tzinfo=UTC))
    listing = await overdue_listing(retention)
    assert [(p["request_id"], p["order_id"]) for p in listing["purges"]] == [(str(request), None)]
    assert (await retention.status(request))["status"] == "overdue"
