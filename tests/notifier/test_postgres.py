"""The claim-then-send path on PostgreSQL, as production runs it: senders in several replicas share
the due deliveries through ``FOR UPDATE SKIP LOCKED`` and never claim the same one twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from services.notifier.deliveries import message_id_for
from services.notifier.models import DeliveryStatus
from services.notifier.sender import CLAIM_LEASE, claim_due
from shared.contracts import exchange
from tests.notifier.world import notifier_world


async def test_senders_share_due_mail_and_send_each_once_on_postgresql(tmp_path, smtp, postgres):
    url = await postgres.create()
    async with notifier_world(tmp_path, smtp, database_url=url) as world:
        envelope = world.envelope(exchange.REQUEST_RECEIVED, world.change(actor="fi_board"))
        assert await world.process(envelope) is True
        assert await world.process(envelope) is False
        await world.deliver(exchange.REQUEST_OVERDUE, world.change("r2", state="in_progress"))

        first, second = await asyncio.gather(claim_due(world.runtime, 3), claim_due(world.runtime, 3))
        assert len(first) + len(second) == 5
        assert not {d.id for d in first} & {d.id for d in second}

        world.clock.travel(CLAIM_LEASE + timedelta(seconds=1))  # both claimers died
        assert await world.send_all() == 5
        assert {d.status for d in await world.mail()} == {DeliveryStatus.sent}
        assert len(smtp.received) == 5
        assert {r.message["Message-ID"] for r in smtp.received} == {d.message_id for d in await world.mail()}
        received = [r for r in smtp.received if r.rcpt_tos == [world.address("ro_college")]]
        assert received[0].message["Message-ID"] == message_id_for(envelope.id, world.address("ro_college"))
