"""The notifier's read model of the recipients (ARCHITECTURE.md, Read models): the highest version
wins, an empty one asks the registry for a snapshot once, a deactivated user's address is not kept;
and the notifier keeps its delivery records no longer than configured."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from services.notifier.models import DeliveryStatus, KnownAuthority, KnownUser, messaging
from services.notifier.pruning import prune_deliveries
from services.notifier.read_model import request_snapshot_when_empty
from shared.contracts import exchange
from shared.contracts.notifier import REGISTRY_SNAPSHOT_REQUESTED
from shared.contracts.registry import AUTHORITY_REPUBLISHED, USER_DEACTIVATED, USER_REPUBLISHED
from tests.notifier.world import notifier_world
from tests.support import wait_until


async def snapshot_requests(world) -> list[dict]:
    outbox = messaging.outbox
    async with world.runtime.sessions() as session:
        rows = await session.scalars(
            select(outbox.c.payload).where(outbox.c.event_type == REGISTRY_SNAPSHOT_REQUESTED.name)
        )
        return [json.loads(payload) for payload in rows.all()]


async def test_an_older_state_never_overwrites_a_newer_one(world):
    newer = world.user("ro_handler", "ro_college", ["request_handler"], "fi")
    older = newer.model_copy(update={"version": newer.version - 1, "language": "ro"})
    await world.deliver(USER_REPUBLISHED, newer)
    await world.deliver(USER_REPUBLISHED, older)
    authority = world.authority("ro_college", "RO", emails=["new@college.example.org"])
    await world.deliver(AUTHORITY_REPUBLISHED, authority)
    await world.deliver(
        AUTHORITY_REPUBLISHED, authority.model_copy(update={"version": 1, "emails": ["old@college.example.org"]})
    )
    async with world.runtime.sessions() as session:
        assert (await session.get(KnownUser, newer.id)).language == "fi"
        assert (await session.get(KnownAuthority, authority.id)).emails == ["new@college.example.org"]


async def test_a_deactivated_user_is_not_alerted_and_their_address_not_kept(world):
    await world.deliver(
        USER_DEACTIVATED, world.user("ro_handler", "ro_college", ["request_handler"], "ro", status="deactivated")
    )
    async with world.runtime.sessions() as session:
        assert (await session.get(KnownUser, world.users["ro_handler"])).email == ""
    await world.deliver(exchange.REQUEST_RECEIVED, world.change(actor="fi_board"))
    await world.send_all()
    assert world.address("ro_handler") not in world.recipients()


async def test_an_empty_read_model_asks_the_registry_for_a_snapshot_once(tmp_path, smtp):
    async with notifier_world(tmp_path, smtp, populate_world=False) as world:
        async with world.app.router.lifespan_context(world.app):
            await wait_until(lambda: snapshot_requests(world), message="no snapshot was asked for")
        assert len(await snapshot_requests(world)) == 1
        await world.add_authority("ro_college", "RO")
        assert await request_snapshot_when_empty(world.runtime) is False
        assert len(await snapshot_requests(world)) == 1


async def test_delivery_records_are_deleted_after_the_retention_period_but_waiting_mail_is_kept(tmp_path, smtp):
    # A week, not the default 30 days: IMI_NOTIFIER_DELIVERY_RETENTION is what counts.
    async with notifier_world(tmp_path, smtp, delivery_retention="P7D") as world:
        await world.deliver(exchange.REQUEST_RECEIVED, world.change(actor="fi_board"))
        await world.send_all()
        await world.smtp.stopped()
        await world.deliver(exchange.REQUEST_OVERDUE, world.change("r2", state="in_progress"))
        await world.send()
        world.clock.travel(timedelta(days=7))
        assert await prune_deliveries(world.runtime) == 0
        world.clock.travel(timedelta(seconds=1))
        assert await prune_deliveries(world.runtime) == 5  # 3 sent, 2 skipped
        remaining = await world.deliveries()
        assert [d.status for d in remaining] == [DeliveryStatus.queued, DeliveryStatus.queued]
        assert {d.request_id for d in remaining} == {world.requests["r2"]}
