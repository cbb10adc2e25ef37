"""Purge on the retention service's order (rule P2): shown through SQL on the exchange's own
database, locally and through the real broker with PostgreSQL. Only data that are due go: a request
reopened after the order was issued keeps its data and the order is confirmed as not purged."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import isodate
import pytest
from sqlalchemy import func, select

from services.exchange import lifecycle as life
from services.exchange.models import (
    Answer,
    Attachment,
    AttachmentContent,
    Message,
    Request,
    SubjectValue,
    Transition,
)
from services.exchange.purge import RetentionPeriods, why_not_purged
from shared.bus.amqp import AmqpTransport
from shared.bus.bus import EventBus
from shared.bus.topology import ServiceQueues
from shared.contracts.exchange import PERSONAL_DATA_PURGED
from shared.contracts.retention import PURGE_ORDERED, PurgeOrder
from shared.events.envelope import Envelope
from shared.settings import Settings
from tests.conftest import _asyncpg_dsn
from tests.exchange.test_visibility import personal_request
from tests.exchange.world import ExchangeWorld, exchange_world
from tests.support import delete_namespace, wait_until

SIX_MONTHS = isodate.parse_duration("P6M")  # the default retention_period, in calendar months
DRAFT_PERIOD = timedelta(days=30)  # the default retention_draft_period, P30D
PERIODS = RetentionPeriods(closure=SIX_MONTHS, draft=DRAFT_PERIOD)


@pytest.fixture
async def world(tmp_path) -> AsyncIterator[ExchangeWorld]:
    async with exchange_world(Settings(data_dir=tmp_path), full_view=True) as made:
        yield made


async def rows(world: ExchangeWorld, request_id: str) -> dict[str, int]:
    rid = uuid.UUID(request_id)
    async with world.runtime.sessions() as session:
        counts = {}
        for name, model in (("subject", SubjectValue), ("answers", Answer), ("messages", Message),
                            ("attachments", Attachment), ("transitions", Transition)):  # fmt: skip
            counts[name] = int(
                await session.scalar(select(func.count()).select_from(model).where(model.request_id == rid)) or 0
            )
        counts["personal_answers"] = int(
            await session.scalar(
                select(func.count()).select_from(Answer).where(Answer.request_id == rid, Answer.personal_data.is_(True))
            )
            or 0
        )
        counts["attachment_contents"] = int(
            await session.scalar(select(func.count()).select_from(AttachmentContent)) or 0
        )
    return counts


async def past_deadline(world: ExchangeWorld, request_id: str) -> None:
    """Move the clock a minute past the request's retention deadline (closure + P6M, rule P2)."""
    closed_at = datetime.fromisoformat(
        (await world.call("GET", f"/requests/{request_id}", "ie_handler")).json()["closed_at"]
    )
    world.clock.travel(closed_at + SIX_MONTHS + timedelta(minutes=1) - world.clock.now())


def order(*request_ids: str, order_id: uuid.UUID | None = None, attempt: int = 1) -> PurgeOrder:
    return PurgeOrder(
        order_id=order_id or uuid.uuid4(),
        request_ids=[uuid.UUID(r) for r in request_ids],
        due_at=datetime(2026, 9, 1, tzinfo=UTC),
        attempt=attempt,
    )


async def test_a_purge_deletes_the_personal_data_and_keeps_the_skeleton_rule_p2(world):
    purged_id = await personal_request(world)
    await world.call("POST", f"/requests/{purged_id}/close", "ie_handler", json={})
    kept_id = await personal_request(world)
    before = await rows(world, purged_id)
    assert before["subject"] == 4 and before["personal_answers"] == 1 and before["messages"] >= 3
    assert before["attachments"] == 1
    await past_deadline(world, purged_id)

    the_order = order(purged_id)
    await world.deliver(PURGE_ORDERED, the_order, producer="retention")

    after = await rows(world, purged_id)
    assert after["subject"] == 0
    assert after["personal_answers"] == 0
    assert after["answers"] == 2  # the yes/no answers stay, for statistics
    assert after["messages"] == 0
    assert after["attachments"] == 0
    assert after["attachment_contents"] == 1  # only the request closed later keeps its file
    assert after["transitions"] == before["transitions"]
    async with world.runtime.sessions() as session:
        skeleton = await session.get(Request, uuid.UUID(purged_id))
        assert skeleton is not None and skeleton.purged_at is not None and skeleton.state == "closed"
        raw = json.dumps([str(v) for v in (await session.execute(select(SubjectValue.value))).scalars()])
    assert (await rows(world, kept_id))["subject"] == 4
    assert "Murphy-Unique-7731" in raw  # the other request's, untouched

    [confirmation] = await world.events(PERSONAL_DATA_PURGED.name)
    assert confirmation["data"]["order_id"] == str(the_order.order_id)
    assert confirmation["data"]["not_purged"] is None
    assert confirmation["data"]["deleted"] == {
        "subject_values": 4,
        "personal_answers": 1,
        "attachment_contents": 1,
        "attachments": 1,
        "messages": before["messages"],
    }
    view = (await world.call("GET", f"/requests/{purged_id}", "ie_handler")).json()
    assert view["personal_data_purged"] is True and view["subject"] == [] and view["messages"] == []


async def test_an_order_sent_again_is_confirmed_again_and_deletes_nothing_more(world):
    request_id = await personal_request(world)
    await world.call("POST", f"/requests/{request_id}/close", "ie_handler", json={})
    await past_deadline(world, request_id)
    first = order(request_id)
    await world.deliver(PURGE_ORDERED, first, producer="retention")
    await world.deliver(PURGE_ORDERED, order(request_id, order_id=first.order_id, attempt=2), producer="retention")
    confirmations = await world.events(PERSONAL_DATA_PURGED.name)
    assert len(confirmations) == 2
    assert confirmations[0]["data"]["deleted"] == confirmations[1]["data"]["deleted"]


async def test_purge_orders_and_confirmations_travel_through_rabbitmq_with_postgresql(rabbitmq, postgres, namespace):
    settings = Settings(
        broker_url=rabbitmq.url,
        bus_namespace=namespace,
        bus_retry_delays=[0.2],
        exchange_database_url=await postgres.create(),
        outbox_poll_interval=0.2,
    )
    confirmations: list[Envelope] = []
    retention = EventBus(AmqpTransport(rabbitmq.url), ServiceQueues(namespace, "retention", (0.2,)))
    await retention.start()

    async def record(envelope: Envelope) -> None:
        confirmations.append(envelope)

    await retention.subscribe({PERSONAL_DATA_PURGED.name}, record)
    try:
        async with exchange_world(settings, full_view=True) as world:
            request_id = await personal_request(world)
            await world.call("POST", f"/requests/{request_id}/close", "ie_handler", json={})
            await past_deadline(world, request_id)
            await retention.publish(
                Envelope(
                    type=PURGE_ORDERED.name,
                    occurred_at=datetime.now(UTC),
                    producer="retention",
                    correlation_id="purge-test",
                    data=order(request_id).model_dump(mode="json"),
                )
            )
            await wait_until(lambda: confirmations, timeout=20, message="purge confirmed over RabbitMQ")
            assert confirmations[0].data["request_id"] == request_id
            assert confirmations[0].correlation_id == "purge-test"
            assert (await rows(world, request_id))["subject"] == 0
    finally:
        await retention.stop()
        await delete_namespace(rabbitmq.url, namespace, [0.2])


async def test_a_draft_purged_after_its_retention_period_cannot_be_sent_rule_p2(world):
    request_id = await world.draft()
    world.clock.travel(DRAFT_PERIOD)
    await world.deliver(PURGE_ORDERED, order(request_id), producer="retention")
    assert (await rows(world, request_id))["subject"] == 0
    refused = await world.call("POST", f"/requests/{request_id}/send", "ie_handler")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "draft_purged"
    edit = await world.call("PATCH", f"/requests/{request_id}", "ie_handler", json={"subject": {"family_name": "X"}})
    assert edit.json()["error"]["code"] == "draft_purged"


# -- the race between a purge order and a reopening (rule P2) ---------------------------------------


async def confirmations_of(world: ExchangeWorld, request_id: str) -> list[dict[str, Any]]:
    return [e["data"] for e in await world.events(PERSONAL_DATA_PURGED.name) if e["data"]["request_id"] == request_id]


async def test_a_request_reopened_after_the_order_was_issued_keeps_its_personal_data_rule_p2(world):
    """The retention service ordered the purge while the reopening was on its way to it: the exchange
    deletes nothing and says why; re-sent, the old order is answered the same way; closed again, the
    request is still not purged by the old order before its new deadline, then purged by a new one."""
    request_id = await personal_request(world)
    await world.call("POST", f"/requests/{request_id}/close", "ie_handler", json={})
    before = await rows(world, request_id)
    world.clock.travel(SIX_MONTHS - timedelta(hours=1))  # an hour before the deadline
    reopened = await world.call("POST", f"/requests/{request_id}/reopen", "ie_handler", json={"comment": "More."})
    assert reopened.json()["state"] == "additional_information_requested", reopened.text
    world.clock.travel(timedelta(hours=2))  # the old deadline has passed; retention did not know of the reopening

    old = order(request_id)
    await world.deliver(PURGE_ORDERED, old, producer="retention")
    await world.deliver(PURGE_ORDERED, order(request_id, order_id=old.order_id, attempt=2), producer="retention")

    reopening = {"messages": before["messages"] + 1, "transitions": before["transitions"] + 1}
    assert await rows(world, request_id) == {**before, **reopening}  # nothing deleted
    [first, again] = await confirmations_of(world, request_id)
    assert first["order_id"] == again["order_id"] == str(old.order_id)
    assert (first["not_purged"], first["deleted"]) == ("request_open", {})
    assert (again["not_purged"], again["deleted"]) == ("request_open", {})
    async with world.runtime.sessions() as session:
        request = await session.get(Request, uuid.UUID(request_id))
        assert request is not None and request.purged_at is None

    # Answered and closed again: a new deadline six months on; the old order, sent again, keeps off.
    replied = await world.call("POST", f"/requests/{request_id}/reply", "ro_handler", json={"comment": "Here."})
    assert replied.json()["state"] == "answered", replied.text
    assert (await world.call("POST", f"/requests/{request_id}/close", "ie_handler", json={})).status_code == 200
    await world.deliver(PURGE_ORDERED, order(request_id, order_id=old.order_id, attempt=3), producer="retention")
    assert (await confirmations_of(world, request_id))[-1]["not_purged"] == "not_due"
    assert (await rows(world, request_id))["subject"] == 4

    # The new deadline comes; the retention service orders again and the data go.
    await past_deadline(world, request_id)
    await world.deliver(PURGE_ORDERED, order(request_id), producer="retention")
    purged = (await confirmations_of(world, request_id))[-1]
    assert purged["not_purged"] is None and purged["deleted"]["subject_values"] == 4
    assert (await rows(world, request_id))["subject"] == 0


async def test_a_draft_order_arriving_after_the_draft_was_sent_deletes_nothing_rule_p2(world):
    request_id = await world.sent_request()
    await world.deliver(PURGE_ORDERED, order(request_id), producer="retention")
    [confirmation] = await confirmations_of(world, request_id)
    assert (confirmation["not_purged"], confirmation["deleted"]) == ("request_open", {})
    assert (await rows(world, request_id))["subject"] == 4


async def test_a_withdrawn_request_is_purged_only_once_its_deadline_has_passed_rule_p2(world):
    request_id = await world.sent_request()
    withdrawn = await world.call("POST", f"/requests/{request_id}/withdraw", "ie_handler", json={"comment": "Done."})
    assert withdrawn.json()["state"] == "withdrawn", withdrawn.text
    await world.deliver(PURGE_ORDERED, order(request_id), producer="retention")
    assert (await confirmations_of(world, request_id))[-1]["not_purged"] == "not_due"
    assert (await rows(world, request_id))["subject"] == 4
    await past_deadline(world, request_id)
    await world.deliver(PURGE_ORDERED, order(request_id), producer="retention")
    assert (await confirmations_of(world, request_id))[-1]["not_purged"] is None
    assert (await rows(world, request_id))["subject"] == 0


CLOSED_AT = datetime(2026, 8, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state", "sent", "closed_at", "now", "expected"),
    [
        # A draft never sent is due 30 days after it became a draft (CLOSED_AT here).
        ("draft", False, None, CLOSED_AT + DRAFT_PERIOD - timedelta(seconds=1), "not_due"),
        ("draft", False, None, CLOSED_AT + DRAFT_PERIOD, None),
        ("awaiting_acceptance", True, None, CLOSED_AT, "request_open"),
        ("additional_information_requested", True, None, CLOSED_AT, "request_open"),  # reopened
        ("referred", True, None, CLOSED_AT, "request_open"),
        ("closed", True, CLOSED_AT, datetime(2027, 2, 28, 11, 59, tzinfo=UTC), "not_due"),
        # Calendar months: 31 August + P6M is 28 February, not 183 days later (2 March).
        ("closed", True, CLOSED_AT, datetime(2027, 2, 28, 12, 0, tzinfo=UTC), None),
        ("withdrawn", True, CLOSED_AT, datetime(2027, 3, 1, tzinfo=UTC), None),
    ],
)
def test_only_requests_whose_data_are_due_are_purged_rule_p2(state, sent, closed_at, now, expected):
    request = Request(
        state=state, created_at=CLOSED_AT, sent_at=CLOSED_AT if sent else None, closed_at=closed_at, purged_at=None
    )
    assert why_not_purged(request, PERIODS, now) == expected


def test_a_purged_request_is_confirmed_again_whatever_its_state_rule_p2():
    request = Request(state="closed", sent_at=CLOSED_AT, closed_at=CLOSED_AT, purged_at=CLOSED_AT)
    assert why_not_purged(request, PERIODS, CLOSED_AT) is None


async def test_a_draft_rejected_back_after_its_order_keeps_its_data_for_a_new_draft_period_rule_p2(tmp_path):
    """Rules P2 and E3: the draft's first period ran out and the retention service ordered its purge,
    but meanwhile it was sent and rejected back into a draft: a new draft period runs from the
    rejection, so the order deletes nothing; a later order, after that period, does."""
    async with exchange_world(Settings(data_dir=tmp_path), approvals=True, full_view=True) as world:
        request_id = await world.draft(reply_date="2026-06-30")
        world.clock.travel(DRAFT_PERIOD - timedelta(hours=1))
        assert (await world.call("POST", f"/requests/{request_id}/send", "ie_handler")).status_code == 200
        rejected = await world.call("POST", f"/requests/{request_id}/reject", "ie_coord_user", json={"comment": "No."})
        assert rejected.json()["state"] == "draft", rejected.text
        world.clock.travel(timedelta(hours=2))  # the first draft period has passed

        await world.deliver(PURGE_ORDERED, order(request_id), producer="retention")
        [kept] = await confirmations_of(world, request_id)
        assert (kept["not_purged"], kept["deleted"]) == ("not_due", {})
        assert (await rows(world, request_id))["subject"] == 4

        world.clock.travel(DRAFT_PERIOD)
        await world.deliver(PURGE_ORDERED, order(request_id), producer="retention")
        assert (await confirmations_of(world, request_id))[-1]["not_purged"] is None
        assert (await rows(world, request_id))["subject"] == 0


async def test_a_reopening_and_a_purge_at_the_same_moment_never_both_happen_rule_p2(postgres, tmp_path):
    """On PostgreSQL: the requester reopens a second before the deadline and the purge order is
    handled while that transaction is still open (the deadline passing meanwhile). The purge waits
    for the reopening's row lock and then sees the request in use: nothing is deleted."""
    database_url = await postgres.create()
    settings = Settings(data_dir=tmp_path, exchange_database_url=database_url)

    async def a_session_waits_for_a_lock() -> bool:
        connection = await asyncpg.connect(_asyncpg_dsn(database_url))
        try:
            waiting = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        finally:
            await connection.close()
        return bool(waiting)

    async with exchange_world(settings, full_view=True) as world:
        request_id = await personal_request(world)
        await world.call("POST", f"/requests/{request_id}/close", "ie_handler", json={})
        await past_deadline(world, request_id)
        world.clock.travel(-timedelta(minutes=1, seconds=1))  # a second before the deadline
        caller = life.Caller(world.tokens.principals["ie_handler"])
        async with world.runtime.messaging.transaction() as uow:
            request = await life.load_request(uow, uuid.UUID(request_id))
            await life.reopen(uow, caller, request, "One more question.", SIX_MONTHS)
            world.clock.travel(timedelta(seconds=2))  # the deadline passes before the reopening commits
            purge = asyncio.create_task(world.deliver(PURGE_ORDERED, order(request_id), producer="retention"))
            await wait_until(a_session_waits_for_a_lock, timeout=10, message="the purge waiting on the row lock")
            assert not purge.done()  # held by the reopening's lock on the request
        await wait_until(purge.done, timeout=10, message="the purge handled after the reopening committed")
        await purge
        [confirmation] = await confirmations_of(world, request_id)
        assert (confirmation["not_purged"], confirmation["deleted"]) == ("request_open", {})
        assert (await rows(world, request_id))["subject"] == 4
        view = (await world.call("GET", f"/requests/{request_id}", "ie_handler")).json()
        assert (view["state"], view["personal_data_purged"]) == ("additional_information_requested", False)
