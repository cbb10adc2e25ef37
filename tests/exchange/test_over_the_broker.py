"""Every transition of a request reaches the other services as an event over the real broker
(RabbitMQ, PostgreSQL): the whole life of rules E1–E4, S8, S14, S15, each event type at least once,
each exactly as the exchange wrote it in its outbox, and none carrying personal data."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from services.exchange.lifecycle import mark_overdue
from shared.bus.amqp import AmqpTransport
from shared.bus.bus import EventBus
from shared.bus.topology import ServiceQueues
from shared.contracts.exchange import REQUEST_EVENTS
from shared.events.envelope import Envelope
from shared.settings import Settings
from tests.exchange.world import ExchangeWorld, exchange_world
from tests.support import delete_namespace, wait_until

DELAYS = [0.2]
SECRETS = ("Murphy-Unique-7731", "1980-05-17", "Please check the diploma", "Secret-Reason-4471")


async def step(world: ExchangeWorld, method: str, path: str, who: str, body: dict | None = None) -> dict:
    response = await world.call(method, path, who, json=body)
    assert response.status_code in (200, 201, 204), (path, response.text)
    return response.json() if response.content else {}


async def whole_life(world: ExchangeWorld) -> None:
    """Every transition, with approval of requests and replies (E3, S15) and allocation (E2, S8)."""
    deleted = await world.draft()
    await step(world, "DELETE", f"/requests/{deleted}", "ie_handler")

    main = await world.draft()
    r = f"/requests/{main}"
    await step(world, "POST", f"{r}/send", "ie_handler")
    await step(world, "POST", f"{r}/reject", "ie_coord_user", {"comment": "Secret-Reason-4471"})
    await step(world, "POST", f"{r}/send", "ie_handler")
    await step(world, "POST", f"{r}/approve", "ie_coord_user")
    await step(world, "POST", f"{r}/reply-date/proposal", "ro_allocator", {"reply_date": "2026-04-20"})
    await step(world, "POST", f"{r}/reply-date/answer", "ie_handler", {"agree": True})
    await step(world, "POST", f"{r}/allocate", "ro_allocator", {"user_id": str(world.users["ro_handler2"])})
    await step(world, "POST", f"{r}/accept", "ro_handler2")
    other = str(world.authorities["ro_other"])
    await step(world, "POST", f"{r}/forward-questions", "ro_handler2",
               {"authority_id": other, "question_ids": ["pq.sanctions.any"]})  # fmt: skip
    answers = {"pq.identity.document_matches": "yes", "pq.diploma.authentic": "yes"}
    await step(world, "PUT", f"{r}/answers", "ro_handler2", {"answers": answers})
    await step(world, "POST", f"{r}/reply", "ro_handler2", {})
    await step(world, "POST", f"{r}/reply/reject", "ro_coord_user", {"comment": "Secret-Reason-4471"})
    await step(world, "POST", f"{r}/reply", "ro_handler2", {})
    await step(world, "POST", f"{r}/reply/approve", "ro_coord_user")
    await step(world, "POST", f"{r}/additional-information", "ie_handler", {"comment": "Secret-Reason-4471"})
    await step(world, "POST", f"{r}/additional-information/refusal", "ro_handler2", {"comment": "No more."})
    await step(world, "POST", f"{r}/referral", "ie_handler", {})
    await step(world, "POST", f"{r}/referral/opinion", "ie_coord_user", {"comment": "Secret-Reason-4471"})
    closed = await step(world, "POST", f"{r}/referral/opinion", "ro_coord_user", {"comment": "Agreed."})
    assert closed["state"] == "closed"
    await step(world, "POST", f"{r}/reopen", "ie_handler", {"comment": "One more thing."})

    forwarded = await world.draft()
    await step(world, "POST", f"/requests/{forwarded}/send", "ie_handler")
    await step(world, "POST", f"/requests/{forwarded}/approve", "ie_coord_user")
    await step(world, "POST", f"/requests/{forwarded}/forward", "ro_allocator", {"authority_id": other})

    withdrawn = await world.draft()
    await step(world, "POST", f"/requests/{withdrawn}/send", "ie_handler")
    await step(world, "POST", f"/requests/{withdrawn}/withdraw", "ie_handler", {})

    world.clock.travel(timedelta(days=60))
    async with world.runtime.messaging.transaction() as uow:
        assert await mark_overdue(uow, uow.clock.now().date()) >= 1


async def test_every_transition_is_published_over_rabbitmq_without_personal_data_rules_e1_e4(
    rabbitmq, postgres, namespace
):
    settings = Settings(
        broker_url=rabbitmq.url,
        bus_namespace=namespace,
        bus_retry_delays=DELAYS,
        exchange_database_url=await postgres.create(),
        outbox_poll_interval=0.2,
    )
    received: list[Envelope] = []
    listener = EventBus(AmqpTransport(rabbitmq.url), ServiceQueues(namespace, "listener", tuple(DELAYS)))
    await listener.start()

    async def record(envelope: Envelope) -> None:
        received.append(envelope)

    await listener.subscribe({contract.name for contract in REQUEST_EVENTS}, record)
    try:
        async with exchange_world(settings, approvals=True, allocation=True) as world:
            await whole_life(world)
            written = [e for e in await world.events() if e["type"].startswith("exchange.request.")]
            await wait_until(lambda: len(received) >= len(written), timeout=30, message="every event over RabbitMQ")
        assert {contract.name for contract in REQUEST_EVENTS} <= {e["type"] for e in written}  # each kind once at least
        assert Counter((e.type, str(e.id)) for e in received) == Counter((e["type"], e["id"]) for e in written)
        bodies = [envelope.model_dump_json() for envelope in received]
        assert [secret for secret in SECRETS if any(secret in body for body in bodies)] == []
    finally:
        await listener.stop()
        await delete_namespace(rabbitmq.url, namespace, DELAYS)
