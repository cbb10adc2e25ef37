"""Events the exchange service publishes (``exchange.<entity>.<verb>.v<major>``).

Every transition of a request is an event carrying the request's non-personal summary after the
transition (rule E1, ARCHITECTURE.md Invariant 5). Personal data never enter events (rule P3): no
subject data, no answers, no free text, no attachment names.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import Field

from shared.events.envelope import Contract, EventData


class SnapshotRequest(EventData):
    """A consumer that starts empty, or suspects a gap, asks the registry to send its state again."""

    reason: str


class RequestChange(EventData):
    """A request after one transition, as other services may know it: ids, dates and states only."""

    request_id: uuid.UUID
    reference: str = Field(description="the human reference, e.g. REQ-2026-000123")
    area: str
    state: str = Field(description="the state after the transition")
    previous_state: str | None
    requesting_authority_id: uuid.UUID
    responding_authority_id: uuid.UUID | None
    requester_user_id: uuid.UUID = Field(description="the requesting side's handler")
    allocated_user_id: uuid.UUID | None = Field(description="the responding side's handler, once allocated (E2)")
    previously_allocated_user_id: uuid.UUID | None = Field(
        default=None,
        description="on a re-allocation (E2), the handler the request was taken from; null otherwise",
    )
    forwarded_to_authority_id: uuid.UUID | None = Field(
        default=None,
        description="on questions_forwarded only, the authority of the same country that received the questions; "
        "null otherwise",
    )
    forwarded_as_request_id: uuid.UUID | None = Field(
        default=None,
        description="on questions_forwarded only, the request the forwarded questions now form; null otherwise",
    )
    forwarded_as_reference: str | None = Field(
        default=None,
        description="on questions_forwarded only, that request's human reference, e.g. REQ-2026-000124; null otherwise",
    )
    reply_date: date | None
    proposed_reply_date: date | None = Field(
        default=None, description="the reply date the responding authority proposes, until the requester answers"
    )
    approving_coordinator_id: uuid.UUID | None = Field(
        default=None, description="the coordinator whose approval is awaited (E3)"
    )
    referral_coordinator_ids: list[uuid.UUID] = Field(default_factory=list, description="referred authorities (E4)")
    actor_user_id: uuid.UUID | None
    actor_authority_id: uuid.UUID | None
    occurred_at: datetime
    closed_at: datetime | None = None
    version: int


class PersonalDataPurged(EventData):
    """Confirmation of a purge order: what was deleted, counted, never shown."""

    order_id: uuid.UUID
    request_id: uuid.UUID
    deleted: dict[str, int] = Field(description="rows or files deleted, per kind of personal data")
    purged_at: datetime
    not_purged: str | None = Field(
        default=None,
        max_length=30,
        pattern=r"^[a-z_]+$",
        description="null when the data are deleted; otherwise why nothing was deleted (rule P2): request_open "
        "(reopened, in use again) or not_due (closed again, its new deadline is ahead); purged_at is then when the "
        "exchange decided. The request is ordered again when its new deadline comes.",
    )


def _request_event(verb: str, summary: str) -> Contract[RequestChange]:
    return Contract(f"exchange.request.{verb}.v1", RequestChange, summary)


REGISTRY_SNAPSHOT_REQUESTED = Contract(
    "exchange.registry_snapshot.requested.v1",
    SnapshotRequest,
    "The exchange asks the registry to republish every authority and user (its read model starts empty)",
)
REQUEST_DRAFTED = _request_event("drafted", "A request was started as a draft (rule E1)")
REQUEST_DRAFT_DELETED = _request_event("draft_deleted", "A draft never sent was deleted with its data")
REQUEST_SUBMITTED_FOR_APPROVAL = _request_event(
    "submitted_for_approval", "A sent request awaits its coordinator's approval (rule E3)"
)
REQUEST_REJECTED = _request_event("rejected", "The coordinator rejected a request; it is a draft again (E3)")
REQUEST_RECEIVED = _request_event(
    "received", "A request reached the responding authority and awaits acceptance (rules E1, E5)"
)
REQUEST_ACCEPTED = _request_event("accepted", "The responding authority accepted the request")
REQUEST_ALLOCATED = _request_event("allocated", "A request was allocated or re-allocated to a handler (rule E2)")
REQUEST_FORWARDED = _request_event("forwarded", "The request was forwarded to another authority of the same country")
REQUEST_QUESTIONS_FORWARDED = _request_event(
    "questions_forwarded", "Some questions were forwarded to another authority as a request of their own"
)
REPLY_DATE_PROPOSED = _request_event("reply_date_proposed", "The responding authority proposes another reply date")
REPLY_DATE_ANSWERED = _request_event("reply_date_answered", "The requester accepted or refused a proposed reply date")
REPLY_SUBMITTED_FOR_APPROVAL = _request_event(
    "reply_submitted_for_approval", "A reply awaits its coordinator's approval (rule E3)"
)
REPLY_REJECTED = _request_event("reply_rejected", "The coordinator sent a reply back to its handler (E3)")
REQUEST_ANSWERED = _request_event("answered", "The responding authority answered")
ADDITIONAL_INFORMATION_REQUESTED = _request_event(
    "additional_information_requested", "The requester asks for more information (rule E4)"
)
ADDITIONAL_INFORMATION_REFUSED = _request_event(
    "additional_information_refused", "The responding authority states it cannot give more (rule E4)"
)
REQUEST_REFERRED = _request_event("referred", "The requester asked its and the other side's coordinators to step in")
REFERRAL_OPINION_GIVEN = _request_event("referral_opinion_given", "A referred coordinator gave its opinion (E4)")
REQUEST_CLOSED = _request_event("closed", "The request was closed; its personal data now has a deadline (P2)")
REQUEST_REOPENED = _request_event("reopened", "A closed request was reopened for more information")
REQUEST_WITHDRAWN = _request_event("withdrawn", "The requester withdrew the request before acceptance")
REQUEST_OVERDUE = _request_event("overdue", "A request passed its reply date without an answer")
PERSONAL_DATA_PURGED = Contract(
    "exchange.personal_data.purged.v1",
    PersonalDataPurged,
    "The exchange carried out a purge order: the request's personal data are deleted (rule P2)",
)

REQUEST_EVENTS = (
    REQUEST_DRAFTED,
    REQUEST_DRAFT_DELETED,
    REQUEST_SUBMITTED_FOR_APPROVAL,
    REQUEST_REJECTED,
    REQUEST_RECEIVED,
    REQUEST_ACCEPTED,
    REQUEST_ALLOCATED,
    REQUEST_FORWARDED,
    REQUEST_QUESTIONS_FORWARDED,
    REPLY_DATE_PROPOSED,
    REPLY_DATE_ANSWERED,
    REPLY_SUBMITTED_FOR_APPROVAL,
    REPLY_REJECTED,
    REQUEST_ANSWERED,
    ADDITIONAL_INFORMATION_REQUESTED,
    ADDITIONAL_INFORMATION_REFUSED,
    REQUEST_REFERRED,
    REFERRAL_OPINION_GIVEN,
    REQUEST_CLOSED,
    REQUEST_REOPENED,
    REQUEST_WITHDRAWN,
    REQUEST_OVERDUE,
)
