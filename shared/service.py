"""The wiring every service shares: database, bus, outbox relay, inbox consumer, health, metrics,
errors, token verification. A service describes itself with a :class:`ServiceDefinition` (its
tables, handlers, routes, migrations) and gets a FastAPI app from :func:`create_service_app`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import isodate
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.auth import JwksTokenVerifier, TokenVerifier
from shared.bus.bus import DeadLetterQueue, EventBus
from shared.bus.topology import ServiceQueues
from shared.bus.transport import Transport, create_transport
from shared.clock import Clock, SystemClock
from shared.database import create_engine, create_session_factory
from shared.errors import (
    BAD_REQUEST,
    MALFORMED,
    REQUEST_TOO_LARGE,
    URI_TOO_LONG,
    ApiError,
    Refusal,
    error_responses,
    install_error_handlers,
)
from shared.events.envelope import Envelope
from shared.limits import RequestLimitsMiddleware
from shared.logging import get_logger
from shared.metrics import RequestContextMiddleware, ServiceMetrics
from shared.outbox import Handlers, Messaging, MessagingTables, OutboxRelay, prune_messaging_tables, utcnow
from shared.settings import Environment, Settings
from shared.waiting import within

log = get_logger(__name__)

BackgroundTask = Callable[["ServiceRuntime"], Coroutine[Any, Any, None]]


@dataclass
class ServiceDefinition:
    """What makes one service: its name, its tables (with outbox and inbox), what it consumes,
    its HTTP routes and where its Alembic migrations live."""

    name: str
    title: str
    description: str
    metadata: MetaData
    tables: MessagingTables
    handlers: Handlers
    migrations: Path
    routers: Sequence[APIRouter] = ()
    background: Sequence[BackgroundTask] = ()
    # How the service checks access tokens; by default against the registry's JWKS over HTTP.
    verifier_factory: Callable[[Settings, Clock], TokenVerifier] | None = None
    # Checks run when the service is built, so a missing or broken key stops it at start, not at first use.
    configuration_checks: Sequence[Callable[[Settings], object]] = ()
    version: str = "0.1.0"


class ServiceRuntime:
    """Everything one running service holds; ``app.state.runtime`` in routes."""

    def __init__(
        self,
        definition: ServiceDefinition,
        settings: Settings,
        *,
        clock: Clock | None = None,
        transport: Transport | None = None,
        verifier: TokenVerifier | None = None,
        engine: AsyncEngine | None = None,
    ) -> None:
        self.definition = definition
        self.name = definition.name
        self.settings = settings
        for check in definition.configuration_checks:
            check(settings)
        self.clock: Clock = clock or SystemClock()
        self.engine = engine or create_engine(settings.database_url(self.name), pool_size=settings.database_pool_size)
        self.sessions: async_sessionmaker[AsyncSession] = create_session_factory(self.engine)
        self.metrics = ServiceMetrics(self.name)
        self.queues = ServiceQueues(settings.bus_namespace, self.name, tuple(settings.bus_retry_delays))
        self.transport = transport or create_transport(
            settings.broker_url, publish_timeout=settings.bus_publish_timeout
        )
        self.bus = EventBus(
            self.transport, self.queues, prefetch=settings.bus_prefetch, observe=self.metrics.observe_event
        )
        self.dead_letters = DeadLetterQueue(self.transport, self.queues)
        self.messaging = Messaging(self.name, self.sessions, definition.tables, self.clock, settings=self.settings)
        self.relay = OutboxRelay(
            self.sessions,
            definition.tables,
            self.bus,
            batch_size=settings.outbox_batch_size,
            poll_interval=settings.outbox_poll_interval,
            on_published=self.metrics.events_published.inc,
        )
        self.messaging.relay = self.relay
        if verifier is None and definition.verifier_factory is not None:
            verifier = definition.verifier_factory(settings, self.clock)
        self.verifier: TokenVerifier = verifier or JwksTokenVerifier(
            settings.resolved_jwks_url,
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            clock=self.clock,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.started = False

    @property
    def expected_consumers(self) -> int:
        return 1 if self.definition.handlers.event_types else 0

    async def start(self) -> None:
        await self.bus.start()
        if self.definition.handlers.event_types:
            await self.bus.subscribe(self.definition.handlers.event_types, self._process)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.relay.run(), name=f"{self.name}-outbox-relay"))
        self._tasks.append(loop.create_task(self._prune_periodically(), name=f"{self.name}-prune"))
        for task in self.definition.background:
            self._tasks.append(loop.create_task(task(self), name=f"{self.name}-{task.__name__}"))
        self.relay.kick()  # rows left pending by a previous run go out now
        self.started = True
        log.info("service started", service=self.name, broker_connected=self.transport.connected)

    async def stop(self) -> None:
        """Stop taking messages, finish those in hand, publish what is committed, then close."""
        self.started = False
        with contextlib.suppress(Exception):
            await self.bus.stop_consuming()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.transport.connected:
            with contextlib.suppress(Exception):
                await within(self.relay.drain(), 5)
        await self.bus.stop()
        if isinstance(self.verifier, JwksTokenVerifier):
            await self.verifier.aclose()
        await self.engine.dispose()
        log.info("service stopped", service=self.name)

    async def _process(self, envelope: Envelope) -> bool:
        return await self.messaging.process(envelope, self.definition.handlers)

    async def _prune_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.settings.prune_interval)
            try:
                await self.prune()
            except Exception as exc:
                log.warning("pruning the outbox and inbox failed", error=repr(exc))

    async def prune(self) -> tuple[int, int]:
        now = utcnow()
        return await prune_messaging_tables(
            self.sessions,
            self.definition.tables,
            outbox_older_than=now - self.settings.outbox_retention,
            inbox_older_than=now - self.settings.inbox_retention,
        )

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
        try:
            async with self.engine.connect() as connection:
                await within(connection.execute(text("SELECT 1")), 3)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        checks["broker"] = "ok" if self.transport.connected else "unavailable"
        checks["consumers"] = {"running": self.transport.consumer_count, "expected": self.expected_consumers}
        ready = (
            self.started
            and checks["database"] == "ok"
            and checks["broker"] == "ok"
            and self.transport.consumer_count >= self.expected_consumers
        )
        return ready, checks

    async def refresh_gauges(self) -> None:
        metrics = self.metrics
        metrics.broker_connected.set(1 if self.transport.connected else 0)
        metrics.consumers.set(self.transport.consumer_count)
        with contextlib.suppress(Exception):
            metrics.outbox_backlog.set(await self.relay.backlog())
        if self.transport.connected and self.expected_consumers:
            with contextlib.suppress(Exception):
                metrics.consumer_lag.set(await self.transport.message_count(self.queues.queue))
                metrics.dead_letters.set(await self.transport.message_count(self.queues.dead_letter_queue))


async def get_runtime(request: Request) -> ServiceRuntime:
    # async, though it awaits nothing: FastAPI runs a plain function dependency in a worker
    # thread, a hand-off (and a GIL round) on every request for one attribute read.
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]

health = APIRouter(tags=["operations"])


@health.get("/health/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "live"}


@health.get(
    "/health/ready",
    summary="Database, broker and consumers are ready",
    responses={503: {"description": "Not ready; the body says which check failed"}},
)
async def ready(runtime: Runtime) -> JSONResponse:
    is_ready, checks = await runtime.readiness()
    return JSONResponse(
        status_code=200 if is_ready else 503,
        content={"status": "ready" if is_ready else "not_ready", "service": runtime.name, "checks": checks},
    )


@health.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(runtime: Runtime) -> Response:
    await runtime.refresh_gauges()
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)


class ClockTravel(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"advance": "P6M1D"}]})

    advance: str = Field(pattern=r"^P", max_length=40, description="an ISO 8601 duration, e.g. P6M1D")


development_clock = APIRouter(tags=["development"])


@development_clock.post(
    "/_dev/clock",
    summary="Move this service's clock forward (never in production)",
    responses=error_responses(
        Refusal(409, "clock_fixed", "this service's clock cannot travel"),
        Refusal(
            422,
            "invalid_duration",
            "advance is an ISO 8601 duration such as P6M1D, within a few centuries",
            field="advance",
        ),
        MALFORMED,
    ),
)
async def travel(body: ClockTravel, runtime: Runtime) -> dict[str, str]:
    """For demonstrations and end-to-end tests across processes: deadlines that take months (rule
    P2) are shown by moving the clock. Only mounted outside production, and only on a clock that
    can travel."""
    clock = runtime.clock
    if not isinstance(clock, SystemClock):
        raise ApiError(409, "clock_fixed", "this service's clock cannot travel")
    now = clock.now()
    try:
        step = (now + isodate.parse_duration(body.advance)) - now
    except (isodate.ISO8601Error, ValueError, OverflowError) as exc:
        raise ApiError(
            422,
            "invalid_duration",
            "advance is an ISO 8601 duration such as P6M1D, within a few centuries",
            field="advance",
        ) from exc
    clock.travel(step)
    return {"now": clock.now().isoformat()}


def create_service_app(
    definition: ServiceDefinition,
    settings: Settings,
    *,
    clock: Clock | None = None,
    transport: Transport | None = None,
    verifier: TokenVerifier | None = None,
    engine: AsyncEngine | None = None,
) -> FastAPI:
    runtime = ServiceRuntime(definition, settings, clock=clock, transport=transport, verifier=verifier, engine=engine)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=definition.title,
        description=definition.description,
        version=definition.version,
        lifespan=lifespan,
        # Any route: a body that cannot be read, a body or an address over the limits (shared/limits.py),
        # invalid input. A route that declares one of these statuses itself lists these codes again.
        responses=error_responses(BAD_REQUEST, REQUEST_TOO_LARGE, URI_TOO_LONG, MALFORMED),
    )
    app.state.runtime = runtime
    app.add_middleware(RequestLimitsMiddleware, max_upload=settings.attachment_max_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=runtime.metrics)
    install_error_handlers(app)
    app.include_router(health)
    if settings.environment != Environment.production:
        app.include_router(development_clock)
    for router in definition.routers:
        app.include_router(router)
    return app
