"""``POST /requests`` with an ``Idempotency-Key``: a client that lost the answer (a timeout, a
service restarted on the way; the fault run's driver meets both) sends it again and gets the draft
the first call wrote, never a second one: not one after the other, not when the tries race."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from services.exchange.models import Request
from shared.contracts import exchange as events
from tests.exchange.world import PQ, ExchangeWorld


def body(world: ExchangeWorld, **overrides: Any) -> dict[str, Any]:
    return {
        "area": PQ,
        "responding_authority_id": str(world.authorities["ro_college"]),
        "question_ids": ["pq.identity.document_matches"],
        "subject": {"family_name": "Keyed-5521", "given_names": "Aoife", "date_of_birth": "1979-02-03"},
        **overrides,
    }


async def write(world: ExchangeWorld, key: str | None, who: str = "ie_handler", **overrides: Any):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {who}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await world.client.post("/requests", json=body(world, **overrides), headers=headers)


async def drafts(world: ExchangeWorld) -> int:
    async with world.runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Request)) or 0)


async def test_a_retry_with_the_same_key_gets_the_first_draft(world):
    first = await write(world, "7d1c-retry")
    again = await write(world, "7d1c-retry")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert await drafts(world) == 1
    assert len(await world.events(events.REQUEST_DRAFTED.name)) == 1  # one draft, one event


async def test_tries_racing_with_one_key_write_one_draft(world):
    answers = await asyncio.gather(*(write(world, "raced-key") for _ in range(8)))
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert await drafts(world) == 1


async def test_other_keys_other_users_and_no_key_each_write_their_own(world):
    await write(world, "k1")
    await write(world, "k2")
    await write(world, None)
    await write(world, None)
    assert await drafts(world) == 4
    # A key is its user's: another handler's request with the same key is another request.
    other = await write(world, "k1", who="fi_user")
    assert other.status_code == 201, other.text
    assert await drafts(world) == 5


async def test_a_key_that_is_too_long_is_refused_clearly(world):
    refused = await write(world, "x" * 101)
    assert refused.status_code == 422
    assert await drafts(world) == 0
