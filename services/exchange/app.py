"""The exchange service: question sets and the life of a request between two authorities (rules E1–E6, P2–P4)."""

import asyncio
from pathlib import Path

from services.exchange.handlers import handlers
from services.exchange.lifecycle import mark_overdue
from services.exchange.models import messaging, metadata
from services.exchange.read_model import request_snapshot_when_empty
from services.exchange.routes import router
from shared.logging import get_logger
from shared.service import ServiceDefinition, ServiceRuntime

log = get_logger(__name__)

OVERDUE_SCAN_INTERVAL = 300.0


async def watch_overdue(runtime: ServiceRuntime) -> None:
    """A request past its reply date is overdue: one event each, for reminders."""
    await request_snapshot_when_empty(runtime)
    while True:
        try:
            async with runtime.messaging.transaction() as uow:
                await mark_overdue(uow, uow.clock.now().date())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("the overdue scan failed; will retry", error=repr(exc))
        await asyncio.sleep(OVERDUE_SCAN_INTERVAL)


definition = ServiceDefinition(
    name="exchange",
    title="IMI exchange",
    description="Question sets and the life of a request between two authorities (rules E1–E6, P2–P4).",
    metadata=metadata,
    tables=messaging,
    handlers=handlers,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    background=[watch_overdue],
)
