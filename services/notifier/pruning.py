"""The notifier keeps its own records no longer than needed (rule P1): a delivery that is done
(sent, failed, skipped or listed in a digest) is deleted IMI_NOTIFIER_DELIVERY_RETENTION after it
was written, with whatever sealed password a failed one still held. Mail still waiting to go out
is never deleted."""

from __future__ import annotations

import asyncio

from sqlalchemy import delete

from services.notifier.models import Delivery, DeliveryStatus
from services.notifier.state import notifier
from shared.logging import get_logger
from shared.service import ServiceRuntime

log = get_logger(__name__)

DONE = (DeliveryStatus.sent, DeliveryStatus.failed, DeliveryStatus.skipped, DeliveryStatus.digested)


async def prune_deliveries(runtime: ServiceRuntime) -> int:
    """Delete the done deliveries older than the retention period; return how many."""
    cutoff = runtime.clock.now() - notifier(runtime).settings.retention
    async with runtime.sessions() as session, session.begin():
        result = await session.execute(delete(Delivery).where(Delivery.status.in_(DONE), Delivery.created_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def prune_deliveries_periodically(runtime: ServiceRuntime) -> None:
    """The background task, every IMI_PRUNE_INTERVAL seconds (as the outbox and inbox are pruned)."""
    while True:
        try:
            deleted = await prune_deliveries(runtime)
            if deleted:
                log.info("old delivery records deleted", count=deleted)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("pruning deliveries failed; will retry", error=repr(exc))
        await asyncio.sleep(runtime.settings.prune_interval)
