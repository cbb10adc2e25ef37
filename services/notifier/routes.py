"""The notifier's HTTP API, for ops: the Commission hosts the system and runs it (rule A3), so every
route needs the authority role ``commission``. Deliveries by status, counts per status, and sending
a refused one again. No route shows an e-mail's content: none is stored."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel
from sqlalchemy import func, select

from services.notifier.models import Delivery, DeliveryStatus
from services.notifier.sender import refresh_queue_gauge
from services.notifier.state import notifier
from shared.auth import Requires
from shared.errors import MALFORMED, SIGNED_IN, ApiError, Refusal, error_responses
from shared.service import Runtime

ERRORS: dict[int | str, dict[str, Any]] = error_responses(
    SIGNED_IN, Refusal(403, "forbidden", "this action needs the role commission"), MALFORMED
)
NOT_FOUND = Refusal(404, "delivery_not_found", "no such delivery")

router = APIRouter(
    prefix="/deliveries", tags=["deliveries"], responses=ERRORS, dependencies=[Depends(Requires("commission"))]
)

DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class DeliveryOut(BaseModel):
    """One alert to one recipient, without its content."""

    id: int
    event_id: uuid.UUID
    event_type: str
    kind: str
    message_id: str
    recipient: str | None
    user_id: uuid.UUID | None
    authority_id: uuid.UUID | None
    language: str
    status: DeliveryStatus
    reason: str | None
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    digest_id: int | None


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_before: int | None = None  # pass as ``before`` for the next (older) page


class Counts(BaseModel):
    counts: dict[DeliveryStatus, int]


def _utc(value: datetime | None) -> datetime | None:
    # SQLite gives back naive datetimes; every stored instant is UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def delivery_out(row: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        kind=row.kind,
        message_id=row.message_id,
        recipient=row.recipient,
        user_id=row.user_id,
        authority_id=row.authority_id,
        language=row.language,
        status=DeliveryStatus(row.status),
        reason=row.reason,
        attempts=row.attempts,
        last_error=row.last_error,
        created_at=_utc(row.created_at) or row.created_at,
        next_attempt_at=_utc(row.next_attempt_at),
        sent_at=_utc(row.sent_at),
        digest_id=row.digest_id,
    )


@router.get("", summary="Deliveries, newest first, optionally of one status")
async def list_deliveries(
    runtime: Runtime,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="only deliveries with a smaller id")] = None,
) -> DeliveryPage:
    query = select(Delivery).order_by(Delivery.id.desc()).limit(limit + 1)
    if status is not None:
        query = query.where(Delivery.status == status)
    if before is not None:
        query = query.where(Delivery.id < before)
    async with runtime.sessions() as session:
        rows = (await session.scalars(query)).all()
    page = [delivery_out(row) for row in rows[:limit]]
    return DeliveryPage(items=page, next_before=page[-1].id if len(rows) > limit else None)


@router.get("/counts", summary="How many deliveries are in each status")
async def count_deliveries(runtime: Runtime) -> Counts:
    async with runtime.sessions() as session:
        rows = await session.execute(select(Delivery.status, func.count()).group_by(Delivery.status))
        found = {status: count for status, count in rows}
    return Counts(counts={status: int(found.get(status, 0)) for status in DeliveryStatus})


@router.get("/{delivery_id}", summary="One delivery", responses=error_responses(NOT_FOUND))
async def get_delivery(runtime: Runtime, delivery_id: DeliveryId) -> DeliveryOut:
    async with runtime.sessions() as session:
        row = await session.get(Delivery, delivery_id)
    if row is None:
        raise ApiError(404, "delivery_not_found", "no such delivery")
    return delivery_out(row)


@router.post(
    "/{delivery_id}/resend",
    summary="Send a refused delivery again (with the same Message-ID)",
    responses=error_responses(
        NOT_FOUND,
        Refusal(409, "not_failed", "the delivery is sent; only a failed one can be sent again"),
    ),
)
async def resend_delivery(runtime: Runtime, delivery_id: DeliveryId) -> DeliveryOut:
    async with runtime.sessions() as session, session.begin():
        row = await session.get(Delivery, delivery_id, with_for_update=True)
        if row is None:
            raise ApiError(404, "delivery_not_found", "no such delivery")
        if row.status != DeliveryStatus.failed:
            raise ApiError(409, "not_failed", f"the delivery is {row.status}; only a failed one can be sent again")
        row.status = DeliveryStatus.queued
        row.next_attempt_at = runtime.clock.now()
        out = delivery_out(row)
    state = notifier(runtime)
    state.wake.set()
    await refresh_queue_gauge(runtime, state)
    return out
