"""What the retention API answers: ids, instants, counts and codes, never personal data."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from services.retention.purge_log import BreakReason

RequestStatus = Literal[
    "no_deadline", "scheduled", "due", "ordered", "purged", "overdue", "suspended", "nothing_to_purge"
]


class DeadlineOut(BaseModel):
    basis: str = Field(description="closure (closed or withdrawn, rule P2) or draft (never sent)")
    starts_at: datetime = Field(description="when the period started: closure, or the draft's start")
    period: str = Field(description="the ISO 8601 period applied, e.g. P6M")
    due_at: datetime = Field(description="the personal data are deleted at the latest then")


class PurgeOut(BaseModel):
    order_id: uuid.UUID
    due_at: datetime
    ordered_at: datetime
    attempts: int
    purged_at: datetime | None = Field(description="when the exchange deleted the data, as it reports")
    confirmed_at: datetime | None = Field(description="when its confirmation reached this service")
    deleted_count: int | None = Field(description="rows or files the exchange deleted")
    not_purged: str | None = Field(
        default=None,
        description="confirmed without deleting anything, and why: request_open (reopened after the order) or "
        "not_due (closed again, its new deadline ahead); the request is ordered again when it falls due (rule P2)",
    )
    overdue: bool
    overdue_reported_at: datetime | None


class RequestRetentionOut(BaseModel):
    request_id: uuid.UUID
    version: int = Field(description="the newest version of the request this service has seen")
    phase: str = Field(description="draft, open, closed, reopened (deadline suspended) or discarded")
    last_event: str = Field(description="the exchange event that set it, e.g. closed")
    status: RequestStatus
    deadline: DeadlineOut | None
    purges: list[PurgeOut] = Field(description="every purge ordered for this request, oldest first")


class UpcomingPurgeOut(BaseModel):
    request_id: uuid.UUID
    phase: str
    deadline: DeadlineOut


class UpcomingOut(BaseModel):
    within: str
    until: datetime
    total: int = Field(description="deadlines up to `until` not yet ordered (past ones included)")
    purges: list[UpcomingPurgeOut]


class OverduePurgeOut(BaseModel):
    request_id: uuid.UUID
    due_at: datetime
    order_id: uuid.UUID | None = Field(description="null: due but not ordered yet")
    ordered_at: datetime | None
    attempts: int
    reported_at: datetime | None = Field(description="when ops were told (retention.purge.overdue.v1)")


class OverdueOut(BaseModel):
    overdue_after: str = Field(description="the grace period after a deadline, ISO 8601")
    count: int
    purges: list[OverduePurgeOut]


class BreakOut(BaseModel):
    seq: int = Field(description="sequence number of the first entry that does not hold")
    reason: BreakReason


class VerificationOut(BaseModel):
    intact: bool
    entries: int
    head_seq: int
    head_hash: str
    first_broken: BreakOut | None


class LogEntryOut(BaseModel):
    seq: int
    kind: str
    order_id: uuid.UUID | None
    request_id: uuid.UUID | None
    due_at: datetime | None
    occurred_at: datetime
    recorded_at: datetime
    attempt: int | None
    deleted_count: int | None
    prev_hash: str
    hash: str


class MonthOut(BaseModel):
    month: str = Field(description="YYYY-MM, by when the exchange deleted the data")
    purged_requests: int
    deleted_items: int
    purged_late: int = Field(description="deleted more than retention_overdue_after after the deadline")


class ReportOut(BaseModel):
    generated_at: datetime
    retention_period: str
    draft_period: str
    purges_per_month: list[MonthOut]
    pending: int = Field(description="purges due or ordered, not yet confirmed")
    overdue: int = Field(description="purges unconfirmed past their grace period: must be 0 (rule P2)")
    overdue_purges: list[OverduePurgeOut]
    log: VerificationOut = Field(description="the purge log's state; keep head_hash outside the system")
