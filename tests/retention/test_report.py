"""The report for data-protection officers (rule P2): purges per month, pending and overdue, as
JSON and as CSV."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime

from tests.retention.conftest import OPS, RetentionUnderTest


async def a_winter_of_purges(retention: RetentionUnderTest) -> None:
    """January: one purge on its deadline. February: two purges late (more than the day of grace
    after their deadline), one purge pending and one overdue (past its grace, unconfirmed)."""
    closures = {
        "r1": datetime(2025, 7, 15, 9, 0, tzinfo=UTC),  # due now (2026-01-15 09:00)
        "r2": datetime(2025, 7, 15, 9, 0, tzinfo=UTC),
        "r3": datetime(2025, 8, 4, 9, 0, tzinfo=UTC),  # due 2026-02-04
        "r4": datetime(2025, 8, 9, 9, 0, tzinfo=UTC),  # due 2026-02-09: overdue on 2026-02-10 09:00
        "r5": datetime(2025, 8, 10, 9, 0, tzinfo=UTC),  # due 2026-02-10 09:00: pending
    }
    ids = {name: uuid.uuid4() for name in closures}
    for name, closed_at in closures.items():
        await retention.feed("closed", ids[name], 6, at=closed_at)
    await retention.run_pass()
    [january] = await retention.orders()
    await retention.confirm(uuid.UUID(january["order_id"]), ids["r1"])
    retention.clock.travel(datetime(2026, 2, 10, 9, 0, tzinfo=UTC) - retention.clock.now())
    await retention.run_pass()
    february = next(o for o in await retention.orders() if o["order_id"] != january["order_id"])
    assert sorted(february["request_ids"]) == sorted(str(ids[n]) for n in ("r3", "r4", "r5"))
    await retention.confirm(uuid.UUID(january["order_id"]), ids["r2"])
    await retention.confirm(uuid.UUID(february["order_id"]), ids["r3"])


async def test_the_report_counts_purges_per_month_pending_and_overdue_rule_p2(retention: RetentionUnderTest):
    await a_winter_of_purges(retention)
    response = await retention.client.get("/retention/report", headers=OPS)
    assert response.status_code == 200
    report = response.json()
    assert report["purges_per_month"] == [
        {"month": "2026-01", "purged_requests": 1, "deleted_items": 4, "purged_late": 0},
        {"month": "2026-02", "purged_requests": 2, "deleted_items": 8, "purged_late": 2},
    ]
    assert (report["pending"], report["overdue"]) == (2, 1)
    assert [p["due_at"] for p in report["overdue_purges"]] == ["2026-02-09T09:00:00Z"]
    assert (report["retention_period"], report["draft_period"]) == ("P6M", "P30D")
    assert report["log"]["intact"] is True
    assert report["log"]["entries"] == 5 + 1 + 3 + 3  # orders, a re-send, confirmations, overdue reports


async def test_the_report_exports_as_csv_rule_p2(retention: RetentionUnderTest):
    await a_winter_of_purges(retention)
    response = await retention.client.get("/retention/report", params={"format": "csv"}, headers=OPS)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows == [
        {"section": "purged", "month": "2026-01", "requests": "1", "deleted_items": "4", "late": "0"},
        {"section": "purged", "month": "2026-02", "requests": "2", "deleted_items": "8", "late": "2"},
        {"section": "pending", "month": "", "requests": "2", "deleted_items": "", "late": ""},
        {"section": "overdue", "month": "", "requests": "1", "deleted_items": "", "late": ""},
    ]


async def test_an_empty_report_says_nothing_is_pending_or_overdue(retention: RetentionUnderTest):
    report = (await retention.client.get("/retention/report", headers=OPS)).json()
    assert (report["purges_per_month"], report["pending"], report["overdue"]) == ([], 0, 0)
    rows = list(csv.reader(io.StringIO((await retention.client.get("/retention/report?format=csv", headers=OPS)).text)))
    assert rows == [
        ["section", "month", "requests", "deleted_items", "late"],
        ["pending", "", "0", "", ""],
        ["overdue", "", "0", "", ""],
    ]


async def test_an_unknown_report_format_is_refused(retention: RetentionUnderTest):
    response = await retention.client.get("/retention/report", params={"format": "xml"}, headers=OPS)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "query.format"
