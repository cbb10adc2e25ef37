"""Events the retention service publishes (``retention.<entity>.<verb>.v<major>``)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from shared.events.envelope import Contract, EventData


class PurgeOrder(EventData):
    """Delete the personal data of these requests now (rule P2). Sent again, same order id, until
    the exchange confirms each request; carrying it out twice deletes nothing more."""

    order_id: uuid.UUID
    request_ids: list[uuid.UUID] = Field(min_length=1)
    due_at: datetime = Field(description="the deadline that made the order due")
    attempt: int = Field(ge=1, description="1 for the first sending, then each re-send")


class PurgeOverdue(EventData):
    """For ops: a purge past its deadline is still not confirmed (it must never stay so)."""

    order_id: uuid.UUID
    request_id: uuid.UUID
    due_at: datetime
    attempts: int


PURGE_ORDERED = Contract(
    "retention.purge.ordered.v1", PurgeOrder, "Personal data of these requests are due for deletion (rule P2)"
)
PURGE_OVERDUE = Contract(
    "retention.purge.overdue.v1", PurgeOverdue, "A purge is overdue and unconfirmed: ops must look (rule P2)"
)
