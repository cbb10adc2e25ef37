"""A retention service for tests: migrated database (SQLite, or PostgreSQL when given), memory
broker, frozen clock, and a token verifier where "ops" is the Commission and "user" is not.

Exchange events are fed the way the consumer does it (``runtime.messaging.process`` with the
inbox); what the service publishes is read from its outbox table."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from services import create_app, load_definition
from services.retention.models import messaging
from services.retention.scheduler import PassResult, run_pass
from shared.auth import InvalidToken, Principal
from shared.bus.memory import MemoryBroker, MemoryTransport
from shared.clock import FrozenClock
from shared.contracts.exchange import PERSONAL_DATA_PURGED
from shared.contracts.retention import PURGE_ORDERED, PURGE_OVERDUE
from shared.events.envelope import Envelope
from shared.migrations import upgrade
from shared.service import ServiceRuntime
from shared.settings import Settings

START = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
OPS = {"Authorization": "Bearer ops"}
USER = {"Authorization": "Bearer user"}


class OpsTokens:
    """Token "ops" holds the authority role commission; "user" is a user of an ordinary authority."""

    ROLES: ClassVar[dict[str, list[str]]] = {"ops": ["commission"], "user": []}

    async def verify(self, token: str) -> Principal:
        if token not in self.ROLES:
            raise InvalidToken("unknown test token")
        return Principal.model_validate(
            {
                "sub": f"{token}-user",
                "authority": f"{token}-authority",
                "country": "BE",
                "authority_roles": self.ROLES[token],
            }
        )


def request_change(
    request_id: uuid.UUID, version: int, occurred_at: datetime, *, state: str, closed_at: datetime | None = None
) -> dict[str, Any]:
    """A RequestChange as the exchange publishes it: ids, dates and states only."""
    return {
        "request_id": str(request_id),
        "reference": f"REQ-2026-{version:06d}",
        "area": "professional_qualifications",
        "state": state,
        "previous_state": None,
        "requesting_authority_id": str(uuid.UUID(int=1)),
        "responding_authority_id": str(uuid.UUID(int=2)),
        "requester_user_id": str(uuid.UUID(int=3)),
        "allocated_user_id": None,
        "reply_date": None,
        "actor_user_id": None,
        "actor_authority_id": None,
        "occurred_at": occurred_at.isoformat(),
        "closed_at": closed_at.isoformat() if closed_at else None,
        "version": version,
    }


@dataclass
class RetentionUnderTest:
    app: FastAPI
    client: httpx.AsyncClient
    clock: FrozenClock

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime

    async def deliver(self, envelope: Envelope) -> bool:
        """What the consumer does with a delivery: False when the inbox shows it was handled."""
        return await self.runtime.messaging.process(envelope, self.runtime.definition.handlers)

    async def feed(
        self,
        verb: str,
        request_id: uuid.UUID,
        version: int,
        *,
        at: datetime | None = None,
        closed_at: datetime | None = None,
    ) -> Envelope:
        """The exchange's ``exchange.request.<verb>.v1`` about ``request_id``, handled once."""
        occurred_at = at or self.clock.now()
        envelope = Envelope(
            type=f"exchange.request.{verb}.v1",
            occurred_at=occurred_at,
            producer="exchange",
            correlation_id=str(uuid.uuid4()),
            data=request_change(request_id, version, occurred_at, state=verb, closed_at=closed_at),
        )
        assert await self.deliver(envelope)
        return envelope

    async def confirm(
        self,
        order_id: uuid.UUID,
        request_id: uuid.UUID,
        *,
        deleted: dict[str, int] | None = None,
        not_purged: str | None = None,
    ) -> Envelope:
        """The exchange's confirmation that it purged ``request_id`` on order ``order_id`` (or, with
        ``not_purged``, that it kept the data because the request is in use again)."""
        envelope = Envelope(
            type=PERSONAL_DATA_PURGED.name,
            occurred_at=self.clock.now(),
            producer="exchange",
            correlation_id=str(uuid.uuid4()),
            data={
                "order_id": str(order_id),
                "request_id": str(request_id),
                "deleted": deleted if deleted is not None else {"answers": 3, "attachments": 1},
                "purged_at": self.clock.now().isoformat(),
                **({"not_purged": not_purged} if not_purged is not None else {}),
            },
        )
        assert await self.deliver(envelope)
        return envelope

    async def run_pass(self) -> PassResult:
        return await run_pass(self.runtime, self.clock.now())

    async def published(self, event_type: str) -> list[dict[str, Any]]:
        """The data of every event of ``event_type`` the service committed, oldest first."""
        outbox = messaging.outbox
        async with self.runtime.sessions() as session:
            payloads = await session.scalars(
                select(outbox.c.payload).where(outbox.c.event_type == event_type).order_by(outbox.c.seq)
            )
            return [json.loads(payload)["data"] for payload in payloads]

    async def orders(self) -> list[dict[str, Any]]:
        return await self.published(PURGE_ORDERED.name)

    async def overdue_events(self) -> list[dict[str, Any]]:
        return await self.published(PURGE_OVERDUE.name)

    async def status(self, request_id: uuid.UUID) -> dict[str, Any]:
        response = await self.client.get(f"/retention/requests/{request_id}", headers=OPS)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def settings_for(data_dir: Any, **overrides: Any) -> Settings:
    # The background scheduler waits an hour between passes: tests run passes themselves.
    values: dict[str, Any] = {"outbox_poll_interval": 0.1, "retention_scan_interval": 3600, **overrides}
    return Settings(data_dir=data_dir, **values)


@asynccontextmanager
async def serving_retention(settings: Settings) -> AsyncIterator[RetentionUnderTest]:
    """The retention app on a freshly migrated database, started as ``imi serve`` would start it."""
    await upgrade(load_definition("retention").migrations, settings.database_url("retention"))
    clock = FrozenClock(START)
    app = create_app(
        "retention", settings, clock=clock, transport=MemoryTransport(MemoryBroker()), verifier=OpsTokens()
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://retention") as client:
            yield RetentionUnderTest(app, client, clock)


@pytest.fixture
async def retention(tmp_path, request: pytest.FixtureRequest) -> AsyncIterator[RetentionUnderTest]:
    """The retention service on SQLite; a test module may set ``retention_settings`` (a dict)."""
    overrides = getattr(request.module, "retention_settings", {})
    async with serving_retention(settings_for(tmp_path, **overrides)) as service:
        yield service
