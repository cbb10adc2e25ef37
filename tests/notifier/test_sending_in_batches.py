"""Much mail at once (ARCHITECTURE.md, Invariants 1 and 2, and the send pace): a large backlog goes
out over a few SMTP connections, its outcomes recorded as a group commit, yet still one e-mail
per event and recipient; mail the server took before the sender died is sent again with the same
Message-ID, never lost; a stop mid-pass records what went out and gives the rest back; the pace
lets a short burst through and holds the rate over every connection."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta

from services.notifier import sender
from services.notifier.models import DeliveryStatus
from services.notifier.sender import CLAIM_LEASE, CONNECTIONS, send_due
from services.notifier.settings import NotifierSettings
from services.notifier.state import configure, notifier
from shared.contracts import exchange
from tests.notifier.world import NotifierWorld, notifier_world
from tests.support import wait_until

REQUESTS = 20  # three e-mails each: 60 in all


async def raise_backlog(world: NotifierWorld) -> None:
    for n in range(REQUESTS):
        await world.process(world.envelope(exchange.REQUEST_RECEIVED, world.change(f"r{n}", actor="fi_board")))


def message_ids(world: NotifierWorld) -> list[str]:
    return [received.message["Message-ID"] for received in world.smtp.received]


async def test_a_backlog_goes_over_a_few_connections_and_each_mail_once(world):
    await raise_backlog(world)
    assert await world.send_all() == 3 * REQUESTS
    assert len(world.smtp.received) == 3 * REQUESTS
    assert sorted(message_ids(world)) == sorted(d.message_id for d in await world.mail())
    assert 1 < len({received.peer for received in world.smtp.received}) <= CONNECTIONS
    rows = await world.mail()
    assert {(d.status, d.attempts, d.claim) for d in rows} == {(DeliveryStatus.sent, 1, None)}


async def test_outcomes_are_recorded_as_soon_as_the_server_takes_them_and_grouped_while_one_records(world, monkeypatch):
    """Group commit: the first mail taken is recorded at once (a sender killed then sends again at
    most what one recording holds), and what the server takes while a recording runs goes into the
    next one (far fewer transactions than mails when the database is slow)."""
    await raise_backlog(world)
    sizes: list[int] = []
    record = sender._record

    async def slow_database(runtime, state, outcomes, result):  # type: ignore[no-untyped-def]
        sizes.append(len(outcomes))
        await asyncio.sleep(0.05)
        await record(runtime, state, outcomes, result)

    monkeypatch.setattr(sender, "_record", slow_database)
    result = await world.send()
    assert result.sent == 3 * REQUESTS
    assert sum(sizes) == 3 * REQUESTS
    assert sizes[0] <= CONNECTIONS  # not held back until a batch is full
    assert len(sizes) < 3 * REQUESTS // 2
    rows = await world.mail()
    assert {(d.status, d.claim) for d in rows} == {(DeliveryStatus.sent, None)}


async def test_mail_the_server_took_before_the_sender_died_is_sent_again_never_lost(tmp_path, smtp, monkeypatch):
    async with notifier_world(tmp_path, smtp) as world:
        await raise_backlog(world)

        async def dies_before_recording(*args, **kwargs):
            raise RuntimeError("the database went away: the sender dies")

        monkeypatch.setattr(sender, "_record", dies_before_recording)
        with contextlib.suppress(RuntimeError):
            await world.send()
        monkeypatch.undo()
        taken = message_ids(world)
        assert taken  # the server has these, and nothing says so
        rows = await world.mail()
        assert {d.message_id for d in rows if d.status == DeliveryStatus.sending} == set(taken)
        assert {d.status for d in rows if d.message_id not in taken} <= {DeliveryStatus.queued}  # given back

    async with notifier_world(tmp_path, smtp, populate_world=False) as restarted:
        restarted.clock.travel(CLAIM_LEASE + timedelta(seconds=1))
        assert await restarted.send_all() == 3 * REQUESTS
        after = message_ids(restarted)[len(taken) :]
        assert sorted(after) == sorted(d.message_id for d in await restarted.mail())  # none lost
        assert set(taken) <= set(after)  # what went out twice is recognisable by its Message-ID
        assert {d.status for d in await restarted.mail()} == {DeliveryStatus.sent}


async def test_a_stop_in_the_middle_of_a_pass_records_what_went_out_and_gives_the_rest_back(tmp_path, smtp):
    async with notifier_world(tmp_path, smtp, send_rate=100.0) as world:
        await raise_backlog(world)
        passing = asyncio.ensure_future(send_due(world.runtime))
        await wait_until(lambda: len(smtp.received) >= 15, message="the pass did not start")
        passing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await passing

        rows = await world.mail()
        statuses = [d.status for d in rows]
        assert DeliveryStatus.sending not in statuses  # nothing is left claimed by the stopped pass
        assert statuses.count(DeliveryStatus.sent) == len(smtp.received)  # all that went out is recorded
        assert DeliveryStatus.queued in statuses
        already = len(smtp.received)
        assert await world.send_all() == 3 * REQUESTS - already
        assert sorted(message_ids(world)) == sorted(d.message_id for d in await world.mail())  # each once


async def test_the_pace_lets_a_burst_go_at_once_after_a_quiet_spell(world):
    state = configure(world.runtime, NotifierSettings(send_rate=100.0))
    assert state.burst == 10
    started = time.monotonic()
    for _ in range(state.burst):
        await state.pace()
    assert time.monotonic() - started < 5 / 100  # not one interval after another
    started = time.monotonic()
    for _ in range(5):
        await state.pace()
    assert time.monotonic() - started >= 4.5 / 100  # then at the rate


async def test_the_pace_holds_the_rate_over_senders_in_parallel(world):
    state = configure(world.runtime, NotifierSettings(send_rate=200.0))

    async def sends(count: int) -> None:
        for _ in range(count):
            await state.pace()

    started = time.monotonic()
    await asyncio.gather(*(sends(20) for _ in range(4)))
    assert time.monotonic() - started >= (4 * 20 - state.burst) / 200


async def test_a_trickle_of_mail_keeps_to_one_connection(world):
    await world.process(world.envelope(exchange.REQUEST_RECEIVED, world.change(actor="fi_board")))
    assert await world.send_all() == 3
    assert notifier(world.runtime).mailer.open_connections == 1
