"""The race between a purge order and a reopening, across the real services: the exchange and the
retention service on their own PostgreSQL databases, talking only over RabbitMQ, on one frozen
clock (rule P2: personal data are deleted at the latest six months after closure, not while the
request is in use again).

The requester reopens a closed request an hour before its deadline while the retention service is
not consuming, so the ``reopened`` event is still on its way to it when it orders the purge. The
exchange keeps the data (plain SQL on its database shows them) and confirms the order as not
purged; the retention service records that, in its hash-chained log too, and sends the order no
more. Answered and closed again, the request gets a new deadline; reopening is refused once it has
passed, and the new order purges the data."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx

from services.retention.scheduler import run_pass
from tests.exchange.world import exchange_world
from tests.retention.test_purge_across_services import (
    DELAYS,
    SIX_MONTHS,
    Database,
    closed_request_full_of_personal_data,
    retention_service,
    status_of,
    statuses_are,
    two_services_on_rabbitmq,
)
from tests.support import delete_namespace, wait_until

PURGE_ORDERED = "retention.purge.ordered.v1"


async def test_a_request_reopened_while_its_purge_is_ordered_keeps_its_data_until_its_new_deadline_rule_p2(
    rabbitmq, postgres, namespace, tmp_path
):
    exchange_url, retention_url = await postgres.create(), await postgres.create()
    settings = two_services_on_rabbitmq(rabbitmq.url, namespace, tmp_path, exchange_url, retention_url)
    exchange_db = Database(exchange_url)
    marker = f"Reopened{uuid.uuid4().hex[:10]}"
    kept = {"subject_values", "answers", "messages", "attachment_contents"}

    async def orders_handled() -> int:
        return int(await exchange_db.fetchval("SELECT count(*) FROM inbox WHERE event_type = $1", PURGE_ORDERED) or 0)

    try:
        async with exchange_world(settings, full_view=True) as world:
            async with retention_service(settings, world) as (retention, ops):
                request_id = await closed_request_full_of_personal_data(world, marker, "2026-04-01")
                first_closure = world.clock.now()
                await wait_until(lambda: statuses_are(ops, [request_id], "scheduled"), timeout=30, message="deadline")

                # The retention service stops consuming: the reopening stays queued for it.
                await retention.bus.stop_consuming()
                world.clock.travel(first_closure + SIX_MONTHS - timedelta(hours=1) - world.clock.now())
                reopened = await world.call(
                    "POST", f"/requests/{request_id}/reopen", "ie_handler", json={"comment": f"{marker}-more"}
                )
                assert reopened.json()["state"] == "additional_information_requested", reopened.text
                world.clock.travel(timedelta(hours=2))  # past the first deadline
                result = await run_pass(retention, world.clock.now())
                assert result.orders_issued == 1  # it does not know of the reopening

                await wait_until(orders_handled, timeout=30, message="the exchange handled the order")
                assert kept <= await exchange_db.tables_holding(marker)  # nothing deleted
                assert await exchange_db.fetchval(
                    "SELECT purged_at IS NULL FROM requests WHERE id = $1", uuid.UUID(request_id)
                )

            # Consuming again: the reopening, then the exchange's answer to the order.
            async with retention_service(settings, world) as (retention, ops):
                await wait_until(
                    lambda: _kept_and_suspended(ops, request_id), timeout=30, message="not purged, suspended"
                )
                world.clock.travel(timedelta(days=2))  # past every re-send wait and the overdue grace
                result = await run_pass(retention, world.clock.now())
                assert (result.orders_issued, result.orders_resent, result.overdue_reported) == (0, 0, 0)
                assert (result.pending, result.overdue) == (0, 0)

                # Answered and closed again: a new deadline from the new closure.
                replied = await world.call("POST", f"/requests/{request_id}/reply", "ro_handler", json={})
                assert replied.json()["state"] == "answered", replied.text
                closed = await world.call("POST", f"/requests/{request_id}/close", "ie_handler", json={})
                second_closure = datetime.fromisoformat(closed.json()["closed_at"])
                await wait_until(lambda: statuses_are(ops, [request_id], "scheduled"), timeout=30, message="again")
                deadline = (await status_of(ops, request_id))["deadline"]
                assert datetime.fromisoformat(deadline["due_at"]) == second_closure + SIX_MONTHS

                # The new deadline passes: reopening is refused, and the new order purges the data.
                world.clock.travel(second_closure + SIX_MONTHS + timedelta(minutes=1) - world.clock.now())
                refused = await world.call(
                    "POST", f"/requests/{request_id}/reopen", "ie_handler", json={"comment": "x"}
                )
                assert (refused.status_code, refused.json()["error"]["code"]) == (409, "retention_deadline_passed")
                result = await run_pass(retention, world.clock.now())
                assert result.orders_issued == 1
                await wait_until(lambda: statuses_are(ops, [request_id], "purged"), timeout=30, message="purged")
                assert await exchange_db.tables_holding(marker) == set()

                purges = (await status_of(ops, request_id))["purges"]
                assert [(p["not_purged"], p["deleted_count"] is not None) for p in purges] == [
                    ("request_open", False),
                    (None, True),
                ]
                kinds = [e["kind"] for e in (await ops.get("/retention/log")).json() if e["request_id"] == request_id]
                assert kinds == ["ordered", "not_purged", "ordered", "confirmed"]
                assert (await ops.get("/retention/log/verify")).json()["intact"] is True
    finally:
        await delete_namespace(rabbitmq.url, namespace, DELAYS)


async def _kept_and_suspended(ops: httpx.AsyncClient, request_id: str) -> bool:
    status = await status_of(ops, request_id)
    purges = status.get("purges", [])
    return status.get("status") == "suspended" and [p["not_purged"] for p in purges] == ["request_open"]
