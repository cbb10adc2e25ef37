"""Waiting with a time limit without ever losing a cancellation.

On Python 3.11, ``asyncio.wait_for`` swallows a cancellation that arrives in the same turn of the
loop as the awaited thing completes (it returns the result instead: CPython gh-86296, fixed in
3.12). A background loop of the form ``while True: wait_for(event.wait(), t); work()`` then
outlives its ``cancel()``, and whoever awaits it on shutdown (``ServiceRuntime.stop``) waits
forever: a service that never stops, a test run that never ends. ``asyncio.timeout`` is built on
``Task.uncancel`` and has no such gap, so every bounded wait in the services goes through here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_set(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds have passed; True when it was set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


async def within(awaitable: Awaitable[T], timeout: float) -> T:
    """``await awaitable``, raising ``TimeoutError`` after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        return await awaitable
