"""The retention scheduler: a background task of the service that, every
``retention_scan_interval`` seconds, settles fresh deadlines, orders due purges, re-sends
unconfirmed orders, reports overdue purges and updates the gauges (rule P2).

Each pass is :func:`run_pass`, a plain function of the runtime and an instant, so tests move a
:class:`~shared.clock.FrozenClock` and run a pass instead of waiting. Passes may run in several
replicas at once: rows are claimed with ``FOR UPDATE SKIP LOCKED`` (SQLite serialises writers).
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Gauge

from services.retention.deadlines import settle_deadlines
from services.retention.purges import issue_orders, purge_counts, report_overdue, resend_orders
from shared.logging import get_logger
from shared.metrics import ServiceMetrics
from shared.service import ServiceRuntime

log = get_logger(__name__)


class RetentionGauges:
    """The retention figures on the service's own Prometheus registry."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.pending = Gauge(
            "imi_retention_pending_purges",
            "Purges due or ordered and not yet confirmed by the exchange",
            registry=metrics.registry,
        )
        self.overdue = Gauge(
            "imi_retention_overdue_purges",
            "Purges unconfirmed past their deadline plus IMI_RETENTION_OVERDUE_AFTER; must be 0 (rule P2)",
            registry=metrics.registry,
        )


_gauges: weakref.WeakKeyDictionary[ServiceMetrics, RetentionGauges] = weakref.WeakKeyDictionary()


def gauges(metrics: ServiceMetrics) -> RetentionGauges:
    """The gauges of one service's registry, created on first use."""
    found = _gauges.get(metrics)
    if found is None:
        found = _gauges[metrics] = RetentionGauges(metrics)
    return found


@dataclass(frozen=True)
class PassResult:
    settled: int
    orders_issued: int
    orders_resent: int
    overdue_reported: int
    pending: int
    overdue: int


async def run_pass(runtime: ServiceRuntime, now: datetime) -> PassResult:
    """One pass of the scheduler at instant ``now``; each step commits on its own."""
    settings, messaging = runtime.settings, runtime.messaging
    async with messaging.transaction() as uow:
        settled = await settle_deadlines(uow.session, settings)
    issued = await issue_orders(messaging, settings, now)
    resent = await resend_orders(messaging, settings, now)
    reported = await report_overdue(messaging, settings, now)
    async with runtime.sessions() as session:
        counts = await purge_counts(session, settings, now)
    figures = gauges(runtime.metrics)
    figures.pending.set(counts.pending)
    figures.overdue.set(counts.overdue)
    return PassResult(settled, len(issued), resent, reported, counts.pending, counts.overdue)


async def purge_scheduler(runtime: ServiceRuntime) -> None:
    """The background task: a pass every ``retention_scan_interval`` seconds, on the runtime's clock."""
    gauges(runtime.metrics)  # scraped as 0 before the first pass rather than missing
    while True:
        await asyncio.sleep(runtime.settings.retention_scan_interval)
        try:
            result = await run_pass(runtime, runtime.clock.now())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("retention pass failed; will retry", error=repr(exc))
            continue
        if result.orders_issued or result.orders_resent or result.overdue_reported:
            log.info("retention pass", **result.__dict__)
