"""A purge order that meets a reopened request (rule P2: personal data are deleted at the latest six
months after closure, and only then). The exchange keeps the data of a request reopened after the
order was issued and confirms the order as not purged; this service records that outcome, in the
hash-chained log too, stops sending the order for that request, and orders again when the request
closes again and its new deadline comes. It never forgets a purge: if the reopening has not reached
it yet, the deadline is ordered again."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import isodate
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from services.retention.models import LogKind, PurgeLogEntry
from shared.contracts.exchange import PersonalDataPurged
from tests.retention.conftest import OPS, START, RetentionUnderTest

SIX_MONTHS = isodate.parse_duration("P6M")
RESEND_AFTER = timedelta(hours=1)  # the default retention_resend_after, PT1H


async def log_of(retention: RetentionUnderTest, request_id: uuid.UUID) -> list[tuple[str, int | None]]:
    async with retention.runtime.sessions() as session:
        entries = await session.scalars(
            select(PurgeLogEntry).where(PurgeLogEntry.request_id == request_id).order_by(PurgeLogEntry.seq)
        )
        return [(entry.kind, entry.deleted_count) for entry in entries]


async def due_request(retention: RetentionUnderTest) -> uuid.UUID:
    """A request closed six months ago: due now."""
    request = uuid.uuid4()
    await retention.feed("closed", request, 4, at=START - SIX_MONTHS)
    return request


async def test_an_order_kept_off_by_a_reopening_is_recorded_and_no_longer_sent_rule_p2(retention: RetentionUnderTest):
    request = await due_request(retention)
    await retention.run_pass()
    [order] = await retention.orders()
    order_id = uuid.UUID(order["order_id"])
    # The requester reopened just before the deadline; the event reaches this service after the order left.
    await retention.feed("reopened", request, 5, at=START - timedelta(minutes=1))
    assert (await retention.status(request))["status"] == "suspended"

    await retention.confirm(order_id, request, deleted={}, not_purged="request_open")
    status = await retention.status(request)
    assert (status["phase"], status["status"], status["deadline"]) == ("reopened", "suspended", None)
    [purge] = status["purges"]
    assert (purge["not_purged"], purge["purged_at"], purge["deleted_count"]) == ("request_open", None, None)
    assert purge["confirmed_at"] is not None and purge["overdue"] is False

    # Never sent again, never reported overdue, never counted as purged.
    retention.clock.travel(RESEND_AFTER * 100)
    result = await retention.run_pass()
    assert (result.orders_issued, result.orders_resent, result.overdue_reported) == (0, 0, 0)
    assert (result.pending, result.overdue) == (0, 0)
    assert len(await retention.orders()) == 1
    report = (await retention.client.get("/retention/report", headers=OPS)).json()
    assert report["purges_per_month"] == [] and report["log"]["intact"] is True
    assert await log_of(retention, request) == [(LogKind.ordered, None), (LogKind.not_purged, None)]

    # Closed again: a new deadline six months on, and a new order when it comes.
    closed_again = retention.clock.now()
    await retention.feed("closed", request, 9, at=closed_again, closed_at=closed_again)
    status = await retention.status(request)
    due_at = datetime.fromisoformat(status["deadline"]["due_at"])
    assert (status["status"], due_at) == ("scheduled", closed_again + SIX_MONTHS)
    retention.clock.travel(closed_again + SIX_MONTHS - retention.clock.now())
    assert (await retention.run_pass()).orders_issued == 1
    new_order = (await retention.orders())[-1]
    assert new_order["order_id"] != str(order_id) and new_order["request_ids"] == [str(request)]
    await retention.confirm(uuid.UUID(new_order["order_id"]), request, deleted={"subject_values": 4})
    assert (await retention.status(request))["status"] == "purged"
    assert await log_of(retention, request) == [
        (LogKind.ordered, None),
        (LogKind.not_purged, None),
        (LogKind.ordered, None),
        (LogKind.confirmed, 4),
    ]
    verified = (await retention.client.get("/retention/log/verify", headers=OPS)).json()
    assert verified["intact"] is True


async def test_kept_data_are_ordered_again_until_the_reopening_arrives_rule_p2(retention: RetentionUnderTest):
    """The exchange answers before its reopening event has reached this service: the deadline is
    still due here, so it is ordered again at the next pass rather than forgotten."""
    request = await due_request(retention)
    await retention.run_pass()
    [first] = await retention.orders()
    await retention.confirm(uuid.UUID(first["order_id"]), request, deleted={}, not_purged="request_open")
    assert (await retention.status(request))["status"] == "due"

    assert (await retention.run_pass()).orders_issued == 1
    second = (await retention.orders())[-1]
    assert second["order_id"] != first["order_id"]
    await retention.feed("reopened", request, 5, at=START - timedelta(minutes=1))
    await retention.confirm(uuid.UUID(second["order_id"]), request, deleted={}, not_purged="request_open")
    retention.clock.travel(RESEND_AFTER * 10)
    result = await retention.run_pass()
    assert (result.orders_issued, result.orders_resent, result.pending) == (0, 0, 0)
    assert (await retention.status(request))["status"] == "suspended"
    kinds = [kind for kind, _ in await log_of(retention, request)]
    assert kinds == [LogKind.ordered, LogKind.not_purged, LogKind.ordered, LogKind.not_purged]


async def test_kept_data_on_one_request_leave_the_rest_of_the_order_to_complete_rule_p2(
    retention: RetentionUnderTest,
):
    reopened, purged = await due_request(retention), await due_request(retention)
    await retention.run_pass()
    [order] = await retention.orders()
    assert sorted(order["request_ids"]) == sorted([str(reopened), str(purged)])
    await retention.feed("reopened", reopened, 5, at=START - timedelta(minutes=1))
    await retention.confirm(uuid.UUID(order["order_id"]), reopened, deleted={}, not_purged="request_open")
    retention.clock.travel(RESEND_AFTER)
    await retention.run_pass()
    again = (await retention.orders())[-1]
    assert (again["attempt"], again["request_ids"]) == (2, [str(purged)])
    await retention.confirm(uuid.UUID(order["order_id"]), purged)
    retention.clock.travel(RESEND_AFTER * 10)
    assert (await retention.run_pass()).orders_resent == 0
    assert [(await retention.status(r))["status"] for r in (reopened, purged)] == ["suspended", "purged"]


def test_not_purged_is_an_optional_field_of_the_v1_confirmation_rule_p2():
    """Within a version only optional fields are added: an older exchange's confirmation still
    validates (and means purged); a reason is a short code, never free text."""
    older = {
        "order_id": str(uuid.uuid4()),
        "request_id": str(uuid.uuid4()),
        "deleted": {"subject_values": 4},
        "purged_at": START.isoformat(),
    }
    assert PersonalDataPurged.model_validate(older).not_purged is None
    assert PersonalDataPurged.model_validate({**older, "not_purged": "request_open"}).not_purged == "request_open"
    for text in ("Dr Murphy asked for more", "x" * 31):
        with pytest.raises(ValidationError):
            PersonalDataPurged.model_validate({**older, "not_purged": text})
