"""Reference numbers: ``REQ-<year>-<number>``, one sequence per year without gaps or repeats, even
when many requests are written at once (the number is taken last, just before commit)."""

from __future__ import annotations

import asyncio

from shared.contracts import exchange as events


async def test_requests_written_at_once_are_numbered_in_sequence_without_gaps_or_repeats(world):
    drafts = await asyncio.gather(*(world.draft() for _ in range(24)))
    references = {}
    for request_id in drafts:
        response = await world.call("GET", f"/requests/{request_id}", "ie_handler")
        references[request_id] = response.json()["reference"]
    assert sorted(references.values()) == [f"REQ-2026-{n:06d}" for n in range(1, 25)]
    published = {
        e["data"]["request_id"]: e["data"]["reference"] for e in await world.events(events.REQUEST_DRAFTED.name)
    }
    assert published == references  # the event carries the number, never the stand-in


async def test_a_draft_that_fails_takes_no_number(world):
    await world.draft()
    refused = await world.call("POST", "/requests", "ie_handler", json={"area": "professional_qualifications",
                               "question_ids": ["no.such.question"]})  # fmt: skip
    assert refused.status_code == 422
    second = await world.draft()
    assert (await world.call("GET", f"/requests/{second}", "ie_handler")).json()["reference"] == "REQ-2026-000002"
