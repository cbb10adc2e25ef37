"""Fixtures of the notifier tests: a real SMTP server on a free port and a notifier beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.notifier.world import NotifierWorld, SmtpServer, notifier_world


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def world(tmp_path, smtp: SmtpServer) -> AsyncIterator[NotifierWorld]:
    async with notifier_world(tmp_path, smtp) as built:
        yield built
