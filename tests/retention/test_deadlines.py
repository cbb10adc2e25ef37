"""Deadlines from the exchange's events (rule P2): six calendar months after closure or withdrawal,
the draft period for drafts never sent, suspended while reopened; events may come twice or out of
order and an older one never moves a deadline back."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.retention.conftest import OPS, RetentionUnderTest


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def due(status: dict) -> datetime | None:  # type: ignore[type-arg]
    deadline = status["deadline"]
    return datetime.fromisoformat(deadline["due_at"]) if deadline else None


@pytest.mark.parametrize(
    ("closed_at", "due_at"),
    [
        (datetime(2026, 2, 10, 14, 30, tzinfo=UTC), datetime(2026, 8, 10, 14, 30, tzinfo=UTC)),
        # Calendar months: the end of August plus six months is the end of February.
        (datetime(2026, 8, 31, 23, 0, tzinfo=UTC), datetime(2027, 2, 28, 23, 0, tzinfo=UTC)),
    ],
)
async def test_closing_sets_the_deadline_six_calendar_months_after_closure_rule_p2(
    retention: RetentionUnderTest, closed_at, due_at
):
    request = uuid.uuid4()
    await retention.feed("received", request, 2)
    await retention.feed("closed", request, 9, at=closed_at + timedelta(seconds=5), closed_at=closed_at)
    status = await retention.status(request)
    assert status["deadline"] == {
        "basis": "closure",
        "starts_at": iso(closed_at),
        "period": "P6M",
        "due_at": iso(due_at),
    }
    assert status["phase"] == "closed"
    assert status["status"] == "scheduled"


async def test_a_closure_without_closed_at_counts_from_when_it_happened_rule_p2(retention: RetentionUnderTest):
    request = uuid.uuid4()
    await retention.feed("closed", request, 4, at=datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    assert due(await retention.status(request)) == datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


async def test_an_instant_with_another_offset_is_kept_as_the_same_instant_rule_p2(retention: RetentionUnderTest):
    request = uuid.uuid4()
    brussels = timezone(timedelta(hours=2))
    await retention.feed("closed", request, 4, at=datetime(2026, 6, 1, 1, 0, tzinfo=brussels))
    assert due(await retention.status(request)) == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)


async def test_withdrawal_sets_the_deadline_like_closure_rule_p2(retention: RetentionUnderTest):
    request = uuid.uuid4()
    withdrawn_at = datetime(2026, 1, 20, 10, 0, tzinfo=UTC)
    await retention.feed("received", request, 2)
    await retention.feed("withdrawn", request, 3, at=withdrawn_at, closed_at=withdrawn_at)
    status = await retention.status(request)
    assert status["deadline"]["basis"] == "closure"
    assert due(status) == datetime(2026, 7, 20, 10, 0, tzinfo=UTC)


async def test_a_draft_never_sent_gets_the_draft_deadline_rule_p2(retention: RetentionUnderTest):
    request = uuid.uuid4()
    await retention.feed("drafted", request, 1, at=datetime(2026, 1, 15, 9, 0, tzinfo=UTC))
    status = await retention.status(request)
    assert status["phase"] == "draft"
    assert status["deadline"]["basis"] == "draft"
    assert status["deadline"]["period"] == "P30D"
    assert due(status) == datetime(2026, 2, 14, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("sent", ["submitted_for_approval", "received", "accepted", "forwarded"])
async def test_sending_a_draft_clears_its_draft_deadline_rule_p2(retention: RetentionUnderTest, sent):
    request = uuid.uuid4()
    await retention.feed("drafted", request, 1)
    await retention.feed(sent, request, 2)
    status = await retention.status(request)
    assert status["phase"] == "open"
    assert status["deadline"] is None
    assert status["status"] == "no_deadline"


async def test_a_rejected_request_is_a_draft_again_with_a_new_draft_deadline_rule_p2(retention: RetentionUnderTest):
    request = uuid.uuid4()
    await retention.feed("drafted", request, 1, at=datetime(2026, 1, 1, tzinfo=UTC))
    await retention.feed("submitted_for_approval", request, 2, at=datetime(2026, 1, 10, tzinfo=UTC))
    await retention.feed("rejected", request, 3, at=datetime(2026, 1, 12, tzinfo=UTC))
    status = await retention.status(request)
    assert status["phase"] == "draft"
    assert due(status) == datetime(2026, 2, 11, tzinfo=UTC)


async def test_a_deleted_draft_leaves_nothing_to_purge_rule_p2(retention: RetentionUnderTest):
    request = uuid.uuid4()
    await retention.feed("drafted", request, 1)
    await retention.feed("draft_deleted", request, 2)
    status = await retention.status(request)
    assert (status["phase"], status["status"], status["deadline"]) == ("discarded", "nothing_to_purge", None)
    retention.clock.travel(timedelta(days=400))
    await retention.run_pass()
    assert await retention.orders() == []


async def test_reopening_suspends_the_deadline_and_closing_again_sets_a_new_one_rule_p2(retention: RetentionUnderTest):
    request = uuid.uuid4()
    await retention.feed("closed", request, 5, at=datetime(2026, 1, 20, tzinfo=UTC))
    await retention.feed("reopened", request, 6, at=datetime(2026, 2, 1, tzinfo=UTC))
    status = await retention.status(request)
    assert (status["phase"], status["status"], status["deadline"]) == ("reopened", "suspended", None)
    # Nothing is ordered while suspended, even past the first deadline.
    retention.clock.travel(datetime(2026, 7, 25, tzinfo=UTC) - retention.clock.now())
    await retention.feed("answered", request, 7)
    await retention.run_pass()
    assert await retention.orders() == []
    assert (await retention.status(request))["status"] == "suspended"
    await retention.feed("closed", request, 8, at=datetime(2026, 7, 26, tzinfo=UTC))
    assert due(await retention.status(request)) == datetime(2027, 1, 26, tzinfo=UTC)


async def test_only_reopening_lifts_a_closure_deadline_rule_p2(retention: RetentionUnderTest):
    request = uuid.uuid4()
    await retention.feed("closed", request, 5, at=datetime(2026, 1, 20, tzinfo=UTC))
    await retention.feed("allocated", request, 6)
    await retention.feed("forwarded", request, 7)
    status = await retention.status(request)
    assert status["phase"] == "closed"
    assert due(status) == datetime(2026, 7, 20, tzinfo=UTC)
    assert status["version"] == 7


async def test_an_older_event_never_moves_a_deadline_back_rule_p2(retention: RetentionUnderTest):
    request = uuid.uuid4()
    closed_at = datetime(2026, 3, 1, tzinfo=UTC)
    await retention.feed("closed", request, 10, at=closed_at, closed_at=closed_at)
    before = await retention.status(request)
    # An older closure (earlier instant), an older reopening, an older draft: all ignored.
    await retention.feed(
        "closed", request, 8, at=closed_at - timedelta(days=20), closed_at=closed_at - timedelta(days=20)
    )
    await retention.feed("reopened", request, 9)
    await retention.feed("drafted", request, 1)
    assert await retention.status(request) == before
    assert due(before) == datetime(2026, 9, 1, tzinfo=UTC)


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
async def test_events_in_any_order_end_with_the_newest_state_rule_p2(retention: RetentionUnderTest, order):
    request = uuid.uuid4()
    closed_at = datetime(2026, 4, 2, 12, 0, tzinfo=UTC)
    events = [
        ("drafted", 1, datetime(2026, 3, 1, tzinfo=UTC), None),
        ("received", 2, datetime(2026, 3, 2, tzinfo=UTC), None),
        ("answered", 3, datetime(2026, 3, 20, tzinfo=UTC), None),
        ("closed", 4, closed_at, closed_at),
    ]
    for index in order:
        verb, version, at, closed = events[index]
        await retention.feed(verb, request, version, at=at, closed_at=closed)
    status = await retention.status(request)
    assert (status["phase"], status["version"]) == ("closed", 4)
    assert due(status) == datetime(2026, 10, 2, 12, 0, tzinfo=UTC)


async def test_a_redelivered_event_changes_nothing(retention: RetentionUnderTest):
    request = uuid.uuid4()
    closing = await retention.feed("closed", request, 3, at=datetime(2026, 1, 10, tzinfo=UTC))
    before = await retention.status(request)
    retention.clock.travel(timedelta(days=1))
    assert await retention.deliver(closing) is False  # the inbox knows it
    # The same transition published again under a new id: same version, nothing moves.
    again = closing.model_copy(
        update={"id": uuid.uuid4(), "data": {**closing.data, "closed_at": "2026-01-11T00:00:00Z"}}
    )
    assert await retention.deliver(again) is True
    assert await retention.status(request) == before


async def test_a_request_with_no_event_yet_is_not_found(retention: RetentionUnderTest):
    response = await retention.client.get(f"/retention/requests/{uuid.uuid4()}", headers=OPS)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    malformed = await retention.client.get("/retention/requests/not-a-uuid", headers=OPS)
    assert malformed.status_code == 422
    assert malformed.json()["error"]["code"] == "invalid_request"


async def test_forwarded_questions_are_a_request_with_a_deadline_of_its_own_rule_p2(retention: RetentionUnderTest):
    """Questions forwarded to another authority become a new request (with a copy of the subject's
    data): each exchange is deleted six months after its own closure, neither moves the other's."""
    parent, child = uuid.uuid4(), uuid.uuid4()
    await retention.feed("received", parent, 2)
    await retention.feed("questions_forwarded", parent, 3)
    await retention.feed("received", child, 1)
    assert [(await retention.status(r))["status"] for r in (parent, child)] == ["no_deadline", "no_deadline"]
    await retention.feed("closed", parent, 6, at=datetime(2026, 2, 1, tzinfo=UTC))
    assert (await retention.status(child))["deadline"] is None  # still open: its data stay
    await retention.feed("closed", child, 5, at=datetime(2026, 3, 10, tzinfo=UTC))
    assert due(await retention.status(parent)) == datetime(2026, 8, 1, tzinfo=UTC)
    assert due(await retention.status(child)) == datetime(2026, 9, 10, tzinfo=UTC)
    retention.clock.travel(datetime(2026, 8, 2, tzinfo=UTC) - retention.clock.now())
    await retention.run_pass()
    assert [o["request_ids"] for o in await retention.orders()] == [[str(parent)]]


async def test_a_forwarded_request_keeps_no_deadline_until_it_closes_rule_p2(retention: RetentionUnderTest):
    """Forwarding hands an open request to another authority: the exchange is not closed (rule P2)."""
    request = uuid.uuid4()
    await retention.feed("received", request, 2, at=datetime(2026, 1, 2, tzinfo=UTC))
    await retention.feed("forwarded", request, 3, at=datetime(2026, 1, 3, tzinfo=UTC))
    assert (await retention.status(request))["status"] == "no_deadline"
    retention.clock.travel(timedelta(days=400))
    await retention.run_pass()
    assert await retention.orders() == []
    await retention.feed("closed", request, 9, at=datetime(2027, 2, 1, tzinfo=UTC))
    assert due(await retention.status(request)) == datetime(2027, 8, 1, tzinfo=UTC)
