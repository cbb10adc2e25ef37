"""The report for data-protection officers: purges per month, pending, overdue (rule P2)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.retention import purge_log
from services.retention.models import PurgeItem
from services.retention.purge_log import Verification
from services.retention.purges import overdue_purges, purge_counts
from services.retention.schemas import BreakOut, MonthOut, OverduePurgeOut, ReportOut, VerificationOut
from shared.settings import Settings

CSV_COLUMNS = ("section", "month", "requests", "deleted_items", "late")


def verification_out(result: Verification) -> VerificationOut:
    broken = result.first_broken
    return VerificationOut(
        intact=result.intact,
        entries=result.entries,
        head_seq=result.head_seq,
        head_hash=result.head_hash,
        first_broken=BreakOut(seq=broken.seq, reason=broken.reason) if broken else None,
    )


async def purges_per_month(session: AsyncSession, settings: Settings) -> list[MonthOut]:
    """Confirmed purges by the month the exchange deleted the data; late ones are those deleted
    more than ``retention_overdue_after`` after their deadline."""
    grace = settings.duration("retention_overdue_after")
    months: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    rows = await session.stream(
        select(PurgeItem.purged_at, PurgeItem.due_at, PurgeItem.deleted_count)
        .where(PurgeItem.purged_at.is_not(None))
        .execution_options(yield_per=1000)
    )
    async for purged_at, due_at, deleted in rows:
        if purged_at is None:
            continue
        figures = months[purged_at.strftime("%Y-%m")]
        figures[0] += 1
        figures[1] += deleted or 0
        figures[2] += 1 if purged_at > due_at + grace else 0
    return [
        MonthOut(month=month, purged_requests=n, deleted_items=items, purged_late=late)
        for month, (n, items, late) in sorted(months.items())
    ]


async def build_report(session: AsyncSession, settings: Settings, now: datetime) -> ReportOut:
    counts = await purge_counts(session, settings, now)
    overdue = await overdue_purges(session, settings, now)
    return ReportOut(
        generated_at=now,
        retention_period=settings.retention_period,
        draft_period=settings.retention_draft_period,
        purges_per_month=await purges_per_month(session, settings),
        pending=counts.pending,
        overdue=counts.overdue,
        overdue_purges=[OverduePurgeOut(**purge.__dict__) for purge in overdue],
        log=verification_out(await purge_log.verify(session)),
    )


def report_csv(report: ReportOut) -> str:
    """One table: a ``purged`` row per month, then the ``pending`` and ``overdue`` totals."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for month in report.purges_per_month:
        writer.writerow(("purged", month.month, month.purged_requests, month.deleted_items, month.purged_late))
    writer.writerow(("pending", "", report.pending, "", ""))
    writer.writerow(("overdue", "", report.overdue, "", ""))
    return out.getvalue()
