"""Bounded waits never lose a cancellation (shared/waiting.py).

On Python 3.11 ``asyncio.wait_for`` returned instead of raising when the cancellation came in the
same turn as the awaited event: the outbox relay then ran on after ``ServiceRuntime.stop`` had
cancelled it, and the stop (and a CI run) waited forever. These tests set the event and cancel in
one turn, which is exactly that race, every time.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from shared.outbox import OutboxRelay
from shared.waiting import wait_set, within


async def settle(task: asyncio.Task[Any]) -> None:
    """Give ``task`` two seconds to finish; a task that runs on is a failure, not a hang."""
    done, _ = await asyncio.wait({task}, timeout=2)
    if not done:
        task.cancel()
        pytest.fail("the task kept running after it was cancelled")


async def test_a_cancellation_arriving_as_the_event_is_set_is_kept():
    event = asyncio.Event()
    waiting = asyncio.create_task(wait_set(event, 60))
    await asyncio.sleep(0)
    event.set()
    waiting.cancel()
    await settle(waiting)
    assert waiting.cancelled()


async def test_the_wait_reports_whether_the_event_came():
    event = asyncio.Event()
    assert await wait_set(event, 0.01) is False
    event.set()
    assert await wait_set(event, 0.01) is True


async def test_within_gives_the_result_or_a_timeout():
    assert await within(asyncio.sleep(0, "done"), 1) == "done"
    with pytest.raises(TimeoutError):
        await within(asyncio.sleep(5), 0.01)


async def test_the_outbox_relay_stops_when_cancelled_in_the_turn_a_commit_wakes_it():
    relay = OutboxRelay(None, SimpleNamespace(outbox=None), None, poll_interval=60)  # type: ignore[arg-type]
    passes: list[int] = []

    async def drain() -> int:
        passes.append(1)
        return 0

    relay.drain = drain  # type: ignore[method-assign]
    running = asyncio.create_task(relay.run())
    await asyncio.sleep(0)  # the relay waits for a kick
    relay.kick()  # a commit wakes it ...
    running.cancel()  # ... in the very turn the service stops
    await settle(running)
    assert running.cancelled()
    assert passes == []
