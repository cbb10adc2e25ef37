"""The periods are settings (ISO 8601 durations): a shorter retention period or another draft period
is followed; a retention period longer than six months (rule P2: "at the latest six months"), or a
period that is not positive, stops the service at start with a message naming the setting."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services import create_app
from shared.bus.memory import MemoryBroker, MemoryTransport
from shared.settings import UnsafeConfiguration
from tests.retention.conftest import RetentionUnderTest, serving_retention, settings_for

CLOSED_AT = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)


async def test_a_shorter_retention_period_and_another_draft_period_are_followed_rule_p2(tmp_path):
    settings = settings_for(tmp_path, retention_period="P3M", retention_draft_period="P7D")
    async with serving_retention(settings) as retention:
        closed, draft = uuid.uuid4(), uuid.uuid4()
        await retention.feed("closed", closed, 4, at=CLOSED_AT, closed_at=CLOSED_AT)
        await retention.feed("drafted", draft, 1, at=CLOSED_AT)
        status = await retention.status(closed)
        assert status["deadline"]["period"] == "P3M"
        assert status["deadline"]["due_at"] == "2026-04-30T10:00:00Z"  # calendar months: end of April
        assert (await retention.status(draft))["deadline"]["due_at"] == "2026-02-07T10:00:00Z"
        retention.clock.travel(datetime(2026, 4, 30, 10, 0, tzinfo=UTC) - retention.clock.now())
        await retention.run_pass()
        ordered = [r for order in await retention.orders() for r in order["request_ids"]]
        assert sorted(ordered) == sorted([str(closed), str(draft)])


async def test_the_longest_period_allowed_is_six_calendar_months_rule_p2(retention: RetentionUnderTest):
    closed = uuid.uuid4()
    await retention.feed("closed", closed, 4, at=CLOSED_AT, closed_at=CLOSED_AT)
    assert (await retention.status(closed))["deadline"]["due_at"] == "2026-07-31T10:00:00Z"


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("retention_period", "P7M", "longer than six months"),
        ("retention_period", "P1Y", "longer than six months"),
        # 182 days exceed six months from the end of August (to the end of February: 181 days).
        ("retention_period", "P182D", "longer than six months"),
        ("retention_period", "P5M31D", "longer than six months"),
        ("retention_period", "P26W", "longer than six months"),
        ("retention_period", "-P1D", "positive"),
        ("retention_period", "PT0S", "positive"),
        ("retention_period", "P99999999Y", "out of range"),
        ("retention_draft_period", "P0D", "positive"),
        ("retention_draft_period", "-P30D", "positive"),
        ("retention_resend_after", "PT0S", "positive"),
        ("retention_resend_after", "-PT1H", "positive"),
        ("retention_overdue_after", "-P1D", "not be negative"),
    ],
)
def test_a_period_the_rules_do_not_allow_stops_the_service_at_start_rule_p2(tmp_path, setting, value, says):
    settings = settings_for(tmp_path, **{setting: value})
    with pytest.raises(UnsafeConfiguration, match=f"IMI_{setting.upper()}={value}.*{says}"):
        create_app("retention", settings, transport=MemoryTransport(MemoryBroker()))


@pytest.mark.parametrize("value", ["P6M", "P181D", "P3M", "PT1H"])
def test_periods_up_to_six_months_are_accepted_rule_p2(tmp_path, value):
    create_app("retention", settings_for(tmp_path, retention_period=value), transport=MemoryTransport(MemoryBroker()))
