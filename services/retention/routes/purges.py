"""Purges to come and purges overdue (rule P2)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import isodate
from fastapi import APIRouter, Query
from sqlalchemy import func, select

from services.retention import purges
from services.retention.deadlines import Deadline, unsettled_deadlines
from services.retention.models import RequestDeadline
from services.retention.routes.common import COMMISSION_ONLY, ERRORS
from services.retention.schemas import DeadlineOut, OverdueOut, OverduePurgeOut, UpcomingOut, UpcomingPurgeOut
from shared.errors import MALFORMED, ApiError, Refusal, error_responses
from shared.service import Runtime

router = APIRouter(prefix="/retention/purges", tags=["retention"], dependencies=COMMISSION_ONLY, responses=ERRORS)


def window_end(now: datetime, within: str) -> datetime:
    """``now`` plus the ISO 8601 duration ``within``; a 422 naming the field otherwise."""
    try:
        end: datetime = now + isodate.parse_duration(within)
    except (isodate.ISO8601Error, ValueError, OverflowError) as exc:
        message = "within must be an ISO 8601 duration such as P30D"
        raise ApiError(422, "invalid_duration", message, field="within") from exc
    if end < now:
        raise ApiError(422, "invalid_duration", "within must not be negative", field="within")
    return end


def _upcoming(row: RequestDeadline, deadline: Deadline) -> UpcomingPurgeOut:
    assert row.basis is not None and row.basis_at is not None
    return UpcomingPurgeOut(
        request_id=row.request_id,
        phase=row.phase,
        deadline=DeadlineOut(basis=row.basis, starts_at=row.basis_at, period=deadline.period, due_at=deadline.due_at),
    )


@router.get(
    "/upcoming",
    response_model=UpcomingOut,
    summary="Deadlines falling due within a period, not yet ordered",
    responses=error_responses(
        Refusal(422, "invalid_duration", "within must be an ISO 8601 duration such as P30D", field="within"),
        MALFORMED,
    ),
)
async def upcoming_purges(
    runtime: Runtime,
    within: Annotated[str, Query(max_length=40, description="ISO 8601 duration from now, e.g. P30D")] = "P30D",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> UpcomingOut:
    """Deadlines up to ``now + within`` that have no purge order yet, earliest first; deadlines
    already past (the next scheduler pass orders them) come first."""
    now = runtime.clock.now()
    until = window_end(now, within)
    in_window = (RequestDeadline.order_id.is_(None), RequestDeadline.due_at <= until)
    async with runtime.sessions() as session:
        total = int(await session.scalar(select(func.count()).select_from(RequestDeadline).where(*in_window)) or 0)
        settled = await session.scalars(
            select(RequestDeadline)
            .where(*in_window)
            .order_by(RequestDeadline.due_at, RequestDeadline.request_id)
            .limit(limit)
        )
        found = [
            _upcoming(row, Deadline(period=row.period or "", due_at=row.due_at))
            for row in settled
            if row.due_at is not None
        ]
        fresh = [(row, d) for row, d in await unsettled_deadlines(session, runtime.settings) if d.due_at <= until]
    found += [_upcoming(row, deadline) for row, deadline in fresh]
    found.sort(key=lambda p: (p.deadline.due_at, str(p.request_id)))
    return UpcomingOut(within=within, until=until, total=total + len(fresh), purges=found[:limit])


@router.get("/overdue", response_model=OverdueOut, summary="Purges unconfirmed past their grace period")
async def list_overdue_purges(runtime: Runtime) -> OverdueOut:
    """Purges still unconfirmed ``retention_overdue_after`` past their deadline: must be none (rule P2)."""
    now = runtime.clock.now()
    async with runtime.sessions() as session:
        overdue = await purges.overdue_purges(session, runtime.settings, now)
    return OverdueOut(
        overdue_after=runtime.settings.retention_overdue_after,
        count=len(overdue),
        purges=[OverduePurgeOut(**purge.__dict__) for purge in overdue],
    )
