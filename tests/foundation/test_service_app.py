"""The wiring every service shares: health, readiness, metrics, machine-readable errors and the
correlation id, on each of the four real services and on a small service with test routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field

from services import create_app, load_definition
from shared.bus.memory import MemoryBroker, MemoryTransport
from shared.migrations import upgrade
from shared.service import Runtime, create_service_app
from shared.settings import SERVICES, Settings
from tests.foundation.stack import definition
from tests.support import PROBE_SENT, Probe, metadata, tables


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client


def embedded_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, broker_url="memory://", outbox_poll_interval=0.1)


@pytest.mark.parametrize("service", SERVICES)
async def test_each_service_is_live_and_ready_on_the_embedded_default(service, tmp_path):
    settings = embedded_settings(tmp_path)
    await upgrade(load_definition(service).migrations, settings.database_url(service))
    async with serving(create_app(service, settings, transport=MemoryTransport(MemoryBroker()))) as client:
        assert (await client.get("/health/live")).json() == {"status": "live"}
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["broker"] == "ok"


@pytest.mark.parametrize("service", SERVICES)
async def test_each_service_is_ready_on_postgresql_and_rabbitmq(service, postgres, rabbitmq, namespace):
    url = await postgres.create()
    await upgrade(load_definition(service).migrations, url)
    settings = Settings(broker_url=rabbitmq.url, bus_namespace=namespace, **{f"{service}_database_url": url})
    async with serving(create_app(service, settings)) as client:
        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["service"] == service


async def test_readiness_says_503_and_why_while_the_broker_is_down(tmp_path):
    node = MemoryBroker()
    settings = embedded_settings(tmp_path)
    await upgrade(load_definition("notifier").migrations, settings.database_url("notifier"))
    async with serving(create_app("notifier", settings, transport=MemoryTransport(node))) as client:
        await node.stop()
        down = await client.get("/health/ready")
        assert down.status_code == 503
        assert down.json()["checks"]["broker"] == "unavailable"
        assert (await client.get("/health/live")).status_code == 200
        await node.start()
        assert (await client.get("/health/ready")).status_code == 200


async def test_readiness_says_503_when_the_database_cannot_be_reached(tmp_path):
    settings = embedded_settings(tmp_path).model_copy(
        update={"retention_database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/none"}
    )
    async with serving(create_app("retention", settings, transport=MemoryTransport(MemoryBroker()))) as client:
        response = await client.get("/health/ready")
        assert response.status_code == 503
        assert response.json()["checks"]["database"].startswith("unavailable")


class ProbeIn(BaseModel):
    value: str = Field(min_length=1, max_length=20)


router = APIRouter()


@router.post("/probes", status_code=201)
async def create_probe(body: ProbeIn, runtime: Runtime) -> dict[str, str]:
    async with runtime.messaging.transaction() as uow:
        envelope = await uow.emit(PROBE_SENT, Probe(value=body.value))
    return {"event_id": str(envelope.id), "correlation_id": envelope.correlation_id}


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("a bug, with a secret inside: s3cr3t")


@pytest.fixture
async def probe_service(tmp_path) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    service = definition("exchange")
    service.routers = [router]
    settings = Settings(exchange_database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", outbox_poll_interval=0.1)
    app = create_service_app(service, settings, transport=MemoryTransport(MemoryBroker()))
    runtime = app.state.runtime
    async with runtime.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    async with serving(app) as client:
        yield client, runtime


async def test_bad_input_gets_a_422_naming_the_field_and_changes_nothing(probe_service):
    client, runtime = probe_service
    response = await client.post("/probes", json={"value": ""})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["field"] == "body.value"
    assert await runtime.relay.backlog() == 0
    assert await _outbox_rows(runtime) == 0


async def test_malformed_json_and_wrong_types_get_a_clear_4xx(probe_service):
    client, _ = probe_service
    broken = await client.post("/probes", content=b'{"value": ', headers={"content-type": "application/json"})
    assert broken.status_code == 422
    assert broken.json()["error"]["code"] == "invalid_request"
    wrong_type = await client.post("/probes", json={"value": {"nested": True}})
    assert wrong_type.status_code == 422
    assert wrong_type.json()["error"]["field"] == "body.value"


async def test_unknown_routes_and_methods_answer_with_an_error_code(probe_service):
    client, _ = probe_service
    assert (await client.get("/nowhere")).json() == {"error": {"code": "not_found", "message": "Not Found"}}
    assert (await client.delete("/health/live")).json()["error"]["code"] == "method_not_allowed"


async def test_an_unexpected_error_is_a_generic_500_that_leaks_nothing(probe_service):
    client, _ = probe_service
    response = await client.get("/boom", headers={"X-Correlation-ID": "corr-500"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "s3cr3t" not in response.text
    assert "corr-500" in response.json()["error"]["message"]


async def test_the_correlation_id_of_a_request_travels_into_the_events_it_causes(probe_service):
    client, _ = probe_service
    response = await client.post("/probes", json={"value": "v"}, headers={"X-Correlation-ID": "trace-42"})
    assert response.status_code == 201
    assert response.headers["x-correlation-id"] == "trace-42"
    assert response.json()["correlation_id"] == "trace-42"
    fresh = await client.get("/health/live")
    assert len(fresh.headers["x-correlation-id"]) == 36  # one is made when none came


async def test_metrics_expose_http_outbox_consumer_and_dead_letter_figures(probe_service):
    client, _ = probe_service
    await client.post("/probes", json={"value": "v"})
    text = (await client.get("/metrics")).text
    assert 'imi_http_requests_total{method="POST",route="/probes",status="201"} 1.0' in text
    for name in ("imi_outbox_backlog", "imi_events_published_total", "imi_broker_connected", "imi_consumers"):
        assert name in text


async def test_metrics_of_a_consuming_service_report_lag_and_dead_letters(tmp_path):
    settings = embedded_settings(tmp_path)
    handlers_definition = definition("notifier")
    from tests.foundation.stack import recording_handlers

    handlers_definition.handlers = recording_handlers()
    app = create_service_app(handlers_definition, settings, transport=MemoryTransport(MemoryBroker()))
    async with app.state.runtime.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    async with serving(app) as client:
        text = (await client.get("/metrics")).text
        assert "imi_consumer_lag 0.0" in text
        assert "imi_dead_letters 0.0" in text
        assert "imi_consumers 1.0" in text
        ready = (await client.get("/health/ready")).json()
        assert ready["checks"]["consumers"] == {"running": 1, "expected": 1}


async def _outbox_rows(runtime) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(tables.outbox)) or 0)


async def test_outside_production_the_clock_travels_for_demonstrations(tmp_path):
    from shared.clock import SystemClock

    settings = embedded_settings(tmp_path)
    await upgrade(load_definition("retention").migrations, settings.database_url("retention"))
    clock = SystemClock()
    app = create_app("retention", settings, clock=clock, transport=MemoryTransport(MemoryBroker()))
    async with serving(app) as client:
        before = clock.now()
        moved = await client.post("/_dev/clock", json={"advance": "P6M1D"})
        assert moved.status_code == 200
        assert (clock.now() - before).days >= 181
        assert (await client.post("/_dev/clock", json={"advance": "six months"})).status_code == 422


def test_in_production_there_is_no_clock_to_move(tmp_path):
    settings = Settings(
        environment="production",
        broker_url="amqp://guest:guest@127.0.0.1:5672/",
        retention_database_url="postgresql+asyncpg://x@127.0.0.1/retention",
    )
    app = create_app("retention", settings)
    assert "/_dev/clock" not in app.openapi()["paths"]


async def test_an_oversized_body_or_address_gets_a_clear_4xx_and_changes_nothing(probe_service):
    client, runtime = probe_service
    huge = await client.post(
        "/probes",
        content=b'{"value": "' + b"x" * (2 * 1024 * 1024) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "request_too_large"

    async def chunks():  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b"x" * 65536

    streamed = await client.post("/probes", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    long_url = await client.get("/health/live?q=" + "a" * 9000)
    assert long_url.status_code == 414
    assert long_url.json()["error"]["code"] == "uri_too_long"
    assert await _outbox_rows(runtime) == 0
