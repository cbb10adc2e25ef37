"""One request's deadline and the purges ordered for it (rule P2)."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from sqlalchemy import select

from services.retention.deadlines import current_deadline
from services.retention.models import Phase, PurgeItem, PurgeOrder, RequestDeadline
from services.retention.purges import overdue_threshold
from services.retention.routes.common import COMMISSION_ONLY, ERRORS
from services.retention.schemas import DeadlineOut, PurgeOut, RequestRetentionOut, RequestStatus
from shared.errors import ApiError, Refusal, error_responses
from shared.service import Runtime

router = APIRouter(
    prefix="/retention",
    tags=["retention"],
    dependencies=COMMISSION_ONLY,
    responses={
        **ERRORS,
        **error_responses(Refusal(404, "not_found", "no event about this request has reached the retention service")),
    },
)


def _status(
    row: RequestDeadline, deadline: DeadlineOut | None, purges: list[PurgeOut], now: datetime, threshold: datetime
) -> RequestStatus:
    current = next((p for p in purges if p.order_id == row.order_id), None) if row.order_id else None
    if current is not None:
        return "purged" if current.confirmed_at else "overdue" if current.overdue else "ordered"
    if deadline is not None:
        if deadline.due_at > now:
            return "scheduled"
        return "overdue" if deadline.due_at <= threshold else "due"
    if row.phase == Phase.reopened:
        return "suspended"
    if row.phase == Phase.discarded:
        return "nothing_to_purge"
    return "no_deadline"


@router.get("/requests/{request_id}", response_model=RequestRetentionOut, summary="A request's deadline and purges")
async def get_request_retention(request_id: uuid.UUID, runtime: Runtime) -> RequestRetentionOut:
    now = runtime.clock.now()
    threshold = overdue_threshold(runtime.settings, now)
    async with runtime.sessions() as session:
        row = await session.get(RequestDeadline, request_id)
        if row is None:
            raise ApiError(404, "not_found", "no event about this request has reached the retention service")
        found = await session.execute(
            select(PurgeItem, PurgeOrder)
            .join(PurgeOrder, PurgeOrder.id == PurgeItem.order_id)
            .where(PurgeItem.request_id == request_id)
            .order_by(PurgeOrder.issued_at, PurgeOrder.id)
        )
        purges = [
            PurgeOut(
                order_id=order.id,
                due_at=item.due_at,
                ordered_at=order.issued_at,
                attempts=order.attempt,
                purged_at=item.purged_at,
                confirmed_at=item.confirmed_at,
                deleted_count=item.deleted_count,
                not_purged=item.not_purged,
                overdue=item.confirmed_at is None and item.due_at <= threshold,
                overdue_reported_at=item.overdue_reported_at,
            )
            for item, order in found
        ]
    rule = current_deadline(row, runtime.settings)
    deadline = (
        DeadlineOut(basis=row.basis, starts_at=row.basis_at, period=rule.period, due_at=rule.due_at)
        if rule is not None and row.basis is not None and row.basis_at is not None
        else None
    )
    return RequestRetentionOut(
        request_id=row.request_id,
        version=row.version,
        phase=row.phase,
        last_event=row.last_event,
        status=_status(row, deadline, purges, now, threshold),
        deadline=deadline,
        purges=purges,
    )
