"""A consumer service in a process of its own, which kills itself with SIGKILL while handling the
event whose value is ``IMI_TEST_CRASH_VALUE``: before its transaction commits, or after the commit
and before the broker hears the acknowledgement (``IMI_TEST_CRASH_AT``)."""

from __future__ import annotations

import asyncio
import os
import signal

from sqlalchemy import event
from sqlalchemy.orm import Session

from shared.settings import Settings
from tests.foundation.stack import definition, recording_handlers
from tests.support import PROBE_SENT


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def main() -> None:
    from shared.service import ServiceRuntime

    crash_value = os.environ.get("IMI_TEST_CRASH_VALUE")
    crash_at = os.environ.get("IMI_TEST_CRASH_AT")
    handlers = recording_handlers()
    _, record = handlers.get(PROBE_SENT.name)  # type: ignore[misc]

    async def record_then_maybe_die(uow, event_):  # type: ignore[no-untyped-def]
        await record(uow, event_)
        if event_.data.value == crash_value:
            if crash_at == "before_commit":
                await uow.session.flush()
                _die()
            uow.session.info["crash_after_commit"] = True

    handlers._handlers[PROBE_SENT.name] = (PROBE_SENT, record_then_maybe_die)
    runtime = ServiceRuntime(definition("notifier", handlers), Settings())

    def after_commit(session: Session) -> None:
        if session.info.pop("crash_after_commit", False):
            _die()

    event.listen(runtime.sessions.kw["sync_session_class"], "after_commit", after_commit)
    await runtime.start()
    print("consumer ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
