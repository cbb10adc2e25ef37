"""Purge on the retention service's order (rule P2): shown through SQL on the exchange's own
database, locally and through the real broker with PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from services.exchange.models import (
    Answer,
    Attachment,
    AttachmentContent,
    Message,
    Request,
    SubjectValue,
    Transition,
)
from shared.bus.amqp import AmqpTransport
from shared.bus.bus import EventBus
from shared.bus.topology import ServiceQueues
from shared.contracts.exchange import PERSONAL_DATA_PURGED
from shared.contracts.retention import PURGE_ORDERED, PurgeOrder
from shared.events.envelope import Envelope
from shared.settings import Settings
from tests.exchange.test_visibility import personal_request
from tests.exchange.world import ExchangeWorld, exchange_world
from tests.support import delete_namespace, wait_until


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
    await world.deliver(PURGE_ORDERED, order(request_id), producer="retention")
    assert (await rows(world, request_id))["subject"] == 0
    refused = await world.call("POST", f"/requests/{request_id}/send", "ie_handler")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "draft_purged"
    edit = await world.call("PATCH", f"/requests/{request_id}", "ie_handler", json={"subject": {"family_name": "X"}})
    assert edit.json()["error"]["code"] == "draft_purged"
