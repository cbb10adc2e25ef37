"""Two replicas of the retention service on one PostgreSQL database: their passes never order a
purge twice, their log stays one unbroken chain, and first events about one request handled at
the same moment do not collide (rule P2)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta

from tests.retention.conftest import OPS, START, serving_retention, settings_for


async def test_two_replicas_order_each_due_purge_exactly_once_rule_p2(postgres, tmp_path):
    url = await postgres.create()
    settings = settings_for(tmp_path, retention_database_url=url, retention_batch_size=2)
    async with serving_retention(settings) as first, serving_retention(settings) as second:
        requests = [uuid.uuid4() for _ in range(9)]
        for request in requests:
            await first.feed("closed", request, 3, at=START.replace(year=2025, month=7) - timedelta(minutes=1))
        for replica in (first, second):
            replica.clock.travel(timedelta(hours=1))
        await asyncio.gather(first.run_pass(), second.run_pass(), first.run_pass(), second.run_pass())

        orders = await first.orders()  # one database, one outbox: both replicas' orders
        ordered = Counter(r for order in orders for r in order["request_ids"])
        assert ordered == Counter({str(request): 1 for request in requests})
        assert all(len(order["request_ids"]) <= 2 for order in orders)
        verification = (await second.client.get("/retention/log/verify", headers=OPS)).json()
        assert (verification["intact"], verification["entries"]) == (True, 9)


async def test_first_events_about_one_request_at_the_same_moment_do_not_collide(postgres, tmp_path):
    url = await postgres.create()
    settings = settings_for(tmp_path, retention_database_url=url)
    async with serving_retention(settings) as first, serving_retention(settings) as second:
        for _ in range(5):
            request = uuid.uuid4()
            await asyncio.gather(
                first.feed("received", request, 2),
                second.feed("closed", request, 3, at=START),
            )
            status = await first.status(request)
            assert (status["phase"], status["version"]) == ("closed", 3)
