"""The services together over the real broker and databases: the registry feeds the exchange's read
model (and a new exchange rebuilds it from a snapshot); retention orders the purge six months after
closure and the exchange carries it out (rules P2, ARCHITECTURE.md Read models)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from services import create_app, load_definition
from services.exchange.models import KnownAuthority, KnownUser, SubjectValue
from services.registry.bootstrap import CoordinatorSpec, bootstrap
from services.retention.scheduler import run_pass
from shared.auth import Principal
from shared.clock import Clock
from shared.migrations import upgrade
from shared.service import ServiceRuntime
from shared.settings import Settings
from tests.exchange.world import exchange_world
from tests.support import delete_namespace, wait_until

DELAYS = [0.2]


def infrastructure(rabbitmq, namespace: str, **databases: str) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(
        broker_url=rabbitmq.url,
        bus_namespace=namespace,
        bus_retry_delays=DELAYS,
        outbox_poll_interval=0.2,
        **{f"{service}_database_url": url for service, url in databases.items()},
    )


@asynccontextmanager
async def running(service: str, settings: Settings, **overrides: object) -> AsyncIterator[FastAPI]:
    await upgrade(load_definition(service).migrations, settings.database_url(service))
    app: FastAPI = create_app(service, settings, **overrides)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        yield app


async def count(runtime: ServiceRuntime, model: type) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_the_registry_feeds_the_exchange_and_a_new_exchange_rebuilds_from_a_snapshot(
    rabbitmq, postgres, namespace
):
    settings = infrastructure(rabbitmq, namespace, registry=await postgres.create(), exchange=await postgres.create())
    try:
        async with running("registry", settings) as registry_app:
            registry: ServiceRuntime = registry_app.state.runtime
            async with running("exchange", settings) as exchange_app:
                exchange: ServiceRuntime = exchange_app.state.runtime
                async with registry.messaging.transaction() as uow:
                    await bootstrap(
                        uow,
                        settings,
                        commission_email="helpdesk@ec.example.eu",
                        coordinators=[CoordinatorSpec("RO", "ro@example.ro"), CoordinatorSpec("IE", "ie@example.ie")],
                    )
                await wait_until(lambda: _counts_are(exchange, 3, 3), timeout=30, message="read model filled")
                async with exchange.sessions() as session:
                    known = (await session.scalars(select(KnownAuthority).order_by(KnownAuthority.country))).all()
                assert [a.country for a in known] == ["BE", "IE", "RO"]
                assert known[2].coordinator_settings[0]["referral"] == "yes"

            fresh = settings.model_copy(update={"exchange_database_url": await postgres.create()})
            async with running("exchange", fresh) as rebuilt_app:
                rebuilt: ServiceRuntime = rebuilt_app.state.runtime
                # It started empty, asked the registry for a snapshot, and got everything again.
                await wait_until(lambda: _counts_are(rebuilt, 3, 3), timeout=30, message="rebuilt from a snapshot")
    finally:
        await delete_namespace(rabbitmq.url, namespace, DELAYS)


async def _counts_are(runtime: ServiceRuntime, authorities: int, users: int) -> bool:
    return await count(runtime, KnownAuthority) == authorities and await count(runtime, KnownUser) == users


class Ops:
    async def verify(self, token: str) -> Principal:
        return Principal.model_validate(
            {"sub": "ops", "authority": "ec", "country": "BE", "authority_roles": ["commission"]}
        )


async def test_personal_data_are_gone_from_the_exchange_six_months_after_closure_and_not_before_rule_p2(
    rabbitmq, postgres, namespace
):
    settings = infrastructure(rabbitmq, namespace, exchange=await postgres.create(), retention=await postgres.create())
    try:
        async with exchange_world(settings, full_view=True) as world:
            clock: Clock = world.clock
            async with running("retention", settings, clock=clock, verifier=Ops()) as retention_app:
                retention: ServiceRuntime = retention_app.state.runtime
                early = await world.answered_request()
                await world.call("POST", f"/requests/{early}/close", "ie_handler", json={})
                world.clock.travel(timedelta(days=30))
                late = await world.answered_request(reply_date="2026-06-01")
                await world.call("POST", f"/requests/{late}/close", "ie_handler", json={})
                ops = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=retention_app),
                    base_url="http://retention",
                    headers={"Authorization": "Bearer ops"},
                )
                await wait_until(lambda: _status_is(ops, late, "scheduled"), timeout=30, message="deadlines known")

                world.clock.travel(timedelta(days=155))  # six months and a day after the first closure
                await run_pass(retention, world.clock.now())
                await wait_until(lambda: _status_is(ops, early, "purged"), timeout=30, message="purge confirmed")

                async with world.runtime.sessions() as session:
                    remaining = {
                        str(r): n
                        for r, n in (
                            await session.execute(
                                select(SubjectValue.request_id, func.count()).group_by(SubjectValue.request_id)
                            )
                        ).all()
                    }
                assert early not in remaining  # gone from the exchange's own tables
                assert remaining[late] == 4  # closed later: still within its six months
                assert await _status_is(ops, late, "scheduled")
                verified = (await ops.get("/retention/log/verify")).json()
                assert verified["intact"] is True
                await ops.aclose()
    finally:
        await delete_namespace(rabbitmq.url, namespace, DELAYS)


async def _status_is(client: httpx.AsyncClient, request_id: str, status: str) -> bool:
    response = await client.get(f"/retention/requests/{uuid.UUID(request_id)}")
    return response.status_code == 200 and response.json()["status"] == status
