"""The fault run (issue 9): requests driven through their whole life over HTTP while the system is
hurt on a schedule, then, once it has settled, every delivery guarantee of ARCHITECTURE.md checked.

The four services run as a container runs them (``python -m services serve <service>``, each its
own OS process) over a PostgreSQL cluster and a RabbitMQ node of the run's own (bench/private.py:
this run restarts and kills them, which it may never do to the machine's shared ones), an SMTP
sink on loopback (bench/smtp_sink.py) and real EdDSA tokens checked against a JWKS on loopback. The
exchange's and the notifier's read models are fed the world's registry events before they start,
as in the other benchmarks (bench/world.py); the registry runs beside them and is hurt like them.

Faults, one after the other, spread over the drive: RabbitMQ stopped and started, the registry
SIGKILLed and restarted, the exchange likewise, PostgreSQL stopped as by a crash and started, the
SMTP server down for ``smtp_outage`` seconds (60 in the full run), the notifier SIGKILLed and
restarted, RabbitMQ SIGKILLed and started, the retention service SIGKILLed and restarted. Each
service killed is started again on the same port and database, as an orchestrator would.

Lives, mixed: answered and closed; withdrawn; forwarded to another authority of the same country,
answered and closed; answered, more information asked and refused, referred to both coordinators,
closed by their opinions. A client retries on connection errors and 5xx: a retried transition
that had committed gets 409 and the client reconciles by reading the request; ``POST /requests``
carries the life's ``Idempotency-Key``, so a retry gets the draft an earlier attempt wrote (the
check that the exchange holds no other request proves it).

Checks after settling (conditions waited on, never fixed sleeps): every request in its expected
final state, and no other request in the exchange; every expected e-mail (derived from the
notifier's recipient rules for this world, services/notifier/alerts.py) delivered exactly once,
counted per (request, recipient) at the SMTP sink and per Message-ID against the notifier's
deliveries, none missing, none doubled, none unexpected; every closed or withdrawn request has its
deletion deadline in the retention service; every outbox empty; every queue, retry queue and
dead-letter queue empty (any dead letter is listed with its error: none is expected here).

One known delay is waited out by travelling the notifier's clock: a notifier SIGKILLed while it
held claimed deliveries leaves them ``sending`` until their claim lease (10 minutes) runs out; the
run moves the notifier's clock past the lease instead of sleeping, and reports that it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from bench.core import Mode, Result, log
from bench.infra import (
    RETRY_DELAYS,
    Infra,
    ServiceProcess,
    SmtpSink,
    Tokens,
    asyncpg_dsn,
    migrate,
    start_service,
)
from bench.private import PrivatePostgres, PrivateRabbitMQ
from bench.world import World, WorldAuthority, WorldUser, build_world, draft_body, prefeed
from shared.settings import SERVICES

NEEDS_BROKER = False  # the run brings its own RabbitMQ (and PostgreSQL)

ANSWERS = {"pq.identity.document_matches": "yes", "pq.diploma.authentic": "yes", "pq.sanctions.any": "no"}
RETRYABLE_STATUS = {500, 502, 503, 504}


@dataclass(frozen=True)
class Size:
    requests: int
    concurrency: int
    drive_seconds: float  # request starts are spread over this long; the faults too
    smtp_outage: float
    settle_timeout: float
    think: float  # at most this long between two steps of a life, so lives span the faults


SIZES = {
    "full": Size(5000, 48, 600, 60, 1500, 0.0),
    "quick": Size(400, 16, 150, 30, 600, 0.1),
    "dry": Size(12, 4, 30, 3, 300, 0.3),
    "ci": Size(40, 8, 50, 12, 120, 0.4),
}

# Out of every 20 lives: 10 answered and closed, 4 withdrawn, 3 forwarded, 3 referred; interleaved.
MIX = (
    ["closed", "withdrawn", "forwarded", "closed", "referred"] * 3
    + ["closed", "withdrawn", "closed"] * 1
    + [
        "closed",
        "closed",
    ]
)
FINAL_STATE = {"closed": "closed", "withdrawn": "withdrawn", "forwarded": "closed", "referred": "closed"}


class DriveError(RuntimeError):
    pass


# -- the lives ---------------------------------------------------------------------------------------------


@dataclass
class Life:
    index: int
    scenario: str
    requester: WorldUser
    responder: WorldAuthority
    forwarded_to: WorldAuthority | None = None
    marker: str = ""
    id: str = ""
    reference: str = ""
    finished: bool = False
    error: str = ""

    @property
    def final_responder(self) -> WorldAuthority:
        return self.forwarded_to or self.responder


def plan_lives(world: World, count: int, seed: int = 9) -> list[Life]:
    rng = random.Random(seed)
    requesters = world.requesters()
    competent = world.competent
    lives = []
    for index in range(count):
        scenario = MIX[index % len(MIX)]
        requester = requesters[index % len(requesters)]
        responder = rng.choice([a for a in competent if a.country != requester.authority.country])
        life = Life(index, scenario, requester, responder, marker=f"chaos-life-{index}-{uuid.uuid4().hex[:8]}")
        if scenario == "forwarded":
            life.forwarded_to = next(a for a in competent if a.country == responder.country and a.id != responder.id)
        lives.append(life)
    return lives


def expected_mails(world: World, life: Life) -> list[tuple[str, str]]:
    """(kind, recipient) of every e-mail the life should cause, by the notifier's rules
    (services/notifier/alerts.py) in this world: allocation off, one request handler per
    authority, one address per authority, coordinators taking part in referrals."""

    def handler(authority: WorldAuthority) -> str:
        return world.handlers_of(authority)[0].email

    def coordinator_user(authority: WorldAuthority) -> str:
        return next(u.email for u in world.users if u.authority.id == authority.coordinator_id)

    requester, responder = life.requester.email, life.responder
    mails = [("request_received", handler(responder)), ("request_received", responder.emails[0])]  # rule E5
    if life.scenario == "withdrawn":
        return [*mails, ("request_withdrawn", handler(responder))]
    if life.scenario == "forwarded":
        target = life.final_responder
        mails += [
            ("request_received", handler(target)),
            ("request_received", target.emails[0]),
            ("request_forwarded", requester),
        ]
    final = life.final_responder
    mails.append(("request_answered", requester))
    if life.scenario == "referred":
        return [
            *mails,
            ("additional_information_requested", handler(final)),
            ("request_referred", handler(final)),
            ("request_referred", coordinator_user(life.requester.authority)),
            ("request_referred", coordinator_user(final)),
            # Closed by the last coordinator's opinion: neither side acted, both are told.
            ("request_closed", requester),
            ("request_closed", handler(final)),
        ]
    return [*mails, ("request_closed", handler(final))]


@dataclass
class DriveStats:
    http_calls: int = 0
    retried_calls: int = 0
    reconciled_transitions: int = 0
    retried_creations: int = 0
    errors: list[str] = field(default_factory=list)


class Client:
    """HTTP calls that ride out the faults: connection errors and 5xx are retried (for up to
    ``patience`` seconds); the caller learns whether an attempt may have reached the service."""

    def __init__(self, stats: DriveStats, patience: float = 240) -> None:
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30, connect=5))
        self.stats = stats
        self.patience = patience

    async def once(
        self, method: str, url: str, token: str, body: Any = None, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response | None:
        """One attempt; None when it failed in a way worth retrying."""
        self.stats.http_calls += 1
        try:
            response = await self.http.request(
                method, url, headers={"Authorization": f"Bearer {token}", **(headers or {})}, json=body, **kw
            )
        except httpx.TransportError:
            return None
        return None if response.status_code in RETRYABLE_STATUS else response

    async def call(self, method: str, url: str, token: str, body: Any = None, **kw: Any) -> tuple[httpx.Response, bool]:
        """The first answer that is not a connection error or a 5xx, and whether an earlier attempt
        may have done the work already."""
        deadline = time.monotonic() + self.patience
        ambiguous, pause = False, 0.2
        while True:
            response = await self.once(method, url, token, body, **kw)
            if response is not None:
                return response, ambiguous
            ambiguous = True
            self.stats.retried_calls += 1
            if time.monotonic() > deadline:
                raise DriveError(f"{method} {url}: no answer for {self.patience} s")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 2.0)

    async def close(self) -> None:
        await self.http.aclose()


class Driver:
    def __init__(self, world: World, urls: dict[str, str], size: Size, stats: DriveStats) -> None:
        self.world = world
        self.exchange = urls["exchange"]
        self.size = size
        self.stats = stats
        self.client = Client(stats)
        self.rng = random.Random(11)
        self.completed = 0

    def coordinator_user(self, authority: WorldAuthority) -> WorldUser:
        return next(u for u in self.world.users if u.authority.id == authority.coordinator_id)

    async def think(self) -> None:
        if self.size.think:
            await asyncio.sleep(self.rng.uniform(0, self.size.think))

    async def state_of(self, life: Life) -> str:
        response, _ = await self.client.call("GET", f"{self.exchange}/requests/{life.id}", life.requester.token)
        if response.status_code != 200:
            raise DriveError(f"GET {life.reference}: {response.status_code} {response.text[:300]}")
        return str(response.json()["state"])

    async def step(
        self, life: Life, who: WorldUser, path: str, done_when: set[str], body: Any = None, method: str = "POST"
    ) -> None:
        """One transition; a 409 after an attempt that may have committed is reconciled by reading
        the request (``done_when``: the states it can be in once this step happened)."""
        await self.think()
        response, ambiguous = await self.client.call(
            method, f"{self.exchange}/requests/{life.id}{path}", who.token, body
        )
        if response.status_code in (200, 201):
            return
        if response.status_code == 409 and ambiguous and await self.happened(life, response, done_when):
            self.stats.reconciled_transitions += 1
            return
        if response.status_code == 404 and ambiguous and path == "/forward" and await self.forwarded(life):
            self.stats.reconciled_transitions += 1
            return
        raise DriveError(f"{method} {path} of {life.reference}: {response.status_code} {response.text[:300]}")

    async def forwarded(self, life: Life) -> bool:
        """A forward that committed before its answer was lost takes the request out of the first
        responder's sight (its retry gets 404); the requester sees it with the new responder."""
        assert life.forwarded_to is not None
        response, _ = await self.client.call("GET", f"{self.exchange}/requests/{life.id}", life.requester.token)
        return response.status_code == 200 and response.json()["responding_authority_id"] == str(life.forwarded_to.id)

    async def happened(self, life: Life, refusal: httpx.Response, done_when: set[str]) -> bool:
        """Whether a step refused as a conflict had in fact been done by an earlier attempt."""
        if "opinion_given" in refusal.text:
            return True
        return await self.state_of(life) in done_when

    async def create(self, life: Life) -> None:
        """``POST /requests`` with the life's marker as its ``Idempotency-Key``: a retry after a lost
        answer gets the draft an earlier attempt wrote, never a second one."""
        body = draft_body(random.Random(life.index), life.responder)
        response, retried = await self.client.call(
            "POST", f"{self.exchange}/requests", life.requester.token, body, headers={"Idempotency-Key": life.marker}
        )
        if response.status_code != 201:
            raise DriveError(f"POST /requests: {response.status_code} {response.text[:300]}")
        life.id, life.reference = response.json()["id"], response.json()["reference"]
        if retried:
            self.stats.retried_creations += 1

    async def live(self, life: Life) -> None:
        requester, responder = life.requester, self.world.handlers_of(life.responder)[0]
        await self.create(life)
        await self.step(life, requester, "/send", {"awaiting_acceptance", "withdrawn", "in_progress"})
        if life.scenario == "withdrawn":
            await self.step(life, requester, "/withdraw", {"withdrawn"}, {"comment": "No longer needed."})
            return
        if life.forwarded_to is not None:
            await self.step(
                life,
                responder,
                "/forward",
                {"awaiting_acceptance", "in_progress"},
                {"authority_id": str(life.forwarded_to.id), "comment": "Not competent; forwarded."},
            )
            responder = self.world.handlers_of(life.forwarded_to)[0]
        await self.step(life, responder, "/accept", {"in_progress"})
        await self.step(life, responder, "/answers", {"in_progress"}, {"answers": ANSWERS}, method="PUT")
        await self.step(life, responder, "/reply", {"answered"}, {"comment": "Authentic; no sanction."})
        if life.scenario != "referred":
            await self.step(life, requester, "/close", {"closed"}, {"comment": "Thank you."})
            return
        after_answer = {"additional_information_refused", "referred", "closed"}
        await self.step(
            life,
            requester,
            "/additional-information",
            {"additional_information_requested", *after_answer},
            {"comment": "The transcript, please."},
        )
        await self.step(life, responder, "/additional-information/refusal", after_answer, {"comment": "We hold none."})
        await self.step(life, requester, "/referral", {"referred", "closed"}, {})
        for authority in (life.requester.authority, life.final_responder):
            await self.step(
                life,
                self.coordinator_user(authority),
                "/referral/opinion",
                {"closed"},
                {"comment": "The answer given is sufficient."},
            )

    async def drive(self, lives: list[Life]) -> None:
        """Start the lives spread over ``drive_seconds``, at most ``concurrency`` at a time."""
        gate = asyncio.Semaphore(self.size.concurrency)
        start = time.monotonic()
        spacing = self.size.drive_seconds / max(1, len(lives))

        async def one(life: Life) -> None:
            await asyncio.sleep(max(0.0, start + life.index * spacing - time.monotonic()))
            async with gate:
                try:
                    await self.live(life)
                    life.finished = True
                except Exception as exc:
                    life.error = f"{type(exc).__name__}: {exc}"[:500]
                    self.stats.errors.append(f"life {life.index} ({life.scenario}, {life.reference}): {life.error}")
                self.completed += 1

        await asyncio.gather(*(one(life) for life in lives))


# -- the system and its faults --------------------------------------------------------------------------------


class Service(ServiceProcess):
    """A service process whose log survives its restarts (appended, not overwritten)."""

    log_mode = "ab"

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL
            self.process.wait()


@dataclass
class Fault:
    name: str
    at_s: float = 0.0
    recovered_s: float | None = None
    note: str = ""


class System:
    """Everything the run owns: PostgreSQL, RabbitMQ, the SMTP sink, the four services."""

    def __init__(self, infra: Infra) -> None:
        self.infra = infra
        self.postgres = PrivatePostgres()
        self.rabbitmq = PrivateRabbitMQ()
        self.sink = SmtpSink(infra)
        self.databases: dict[str, str] = {}
        self.services: dict[str, Service] = {}
        self.started = time.monotonic()
        self.faults: list[Fault] = []
        self.held_at_kill: set[str] = set()  # Message-IDs a SIGKILLed notifier held claimed

    def urls(self) -> dict[str, str]:
        return {name: service.url for name, service in self.services.items()}

    async def start(self, world: World) -> None:
        await asyncio.gather(self.postgres.start(), self.rabbitmq.start())
        self.infra.server_url, self.infra.amqp = self.postgres.url, self.rabbitmq.url
        for service in SERVICES:
            self.databases[service] = await self.infra.create_database()
            await migrate(service, self.databases[service])
        await prefeed("exchange", self.infra.settings(exchange_database_url=self.databases["exchange"]), world)
        await prefeed("notifier", self.infra.settings(notifier_database_url=self.databases["notifier"]), world)
        self.sink.start()
        await self.sink.wait_ready()
        common = {"IMI_OUTBOX_POLL_INTERVAL": "0.5", "IMI_DATABASE_POOL_SIZE": "10"}
        extra = {
            "notifier": {
                "IMI_SMTP_HOST": "127.0.0.1",
                "IMI_SMTP_PORT": str(self.sink.port),
                "IMI_SMTP_SECURITY": "none",
                "IMI_NOTIFIER_SEND_RATE": "400",
                "IMI_NOTIFIER_RETRY_INITIAL": "1",
                "IMI_NOTIFIER_RETRY_MAX": "5",
            }
        }
        for service in SERVICES:
            self.services[service] = Service(
                self.infra, service, self.databases[service], **common, **extra.get(service, {})
            )
        await asyncio.gather(*(start_service(s) for s in self.services.values()))
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 1)

    async def all_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                answers = []
                for service in self.services.values():
                    with contextlib.suppress(httpx.HTTPError):
                        answers.append((await client.get(f"{service.url}/health/ready")).status_code == 200)
                if len(answers) == len(self.services) and all(answers):
                    return True
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.3)

    async def readiness(self) -> dict[str, str]:
        """Each service's readiness answer, for the report when one does not come back."""
        found = {}
        async with httpx.AsyncClient(timeout=5) as client:
            for name, service in self.services.items():
                try:
                    found[name] = (await client.get(f"{service.url}/health/ready")).text[:300]
                except httpx.HTTPError as exc:
                    found[name] = repr(exc)
        return found

    async def inject(self, name: str, action: Callable[[], Awaitable[str | None]]) -> Fault:
        fault = Fault(name, at_s=self.elapsed())
        log(f"chaos: {name} at {fault.at_s} s")
        fault.note = (await action()) or ""
        if await self.all_ready(180):
            fault.recovered_s = self.elapsed()
        else:
            fault.note += f"; not all ready again within 180 s: {await self.readiness()}"
        self.faults.append(fault)
        return fault

    async def restart_rabbitmq(self) -> str:
        await self.rabbitmq.stop()
        await self.rabbitmq.start()
        return "rabbitmqctl stop, then rabbitmq-server started again"

    async def kill_rabbitmq(self) -> str:
        await self.rabbitmq.kill()
        await asyncio.sleep(2)
        await self.rabbitmq.start()
        return "the node's Erlang VM SIGKILLed, then started again"

    async def restart_postgres(self) -> str:
        await self.postgres.restart()
        return "pg_ctl stop -m immediate (as a crash), then started (crash recovery)"

    def killer(self, service: str) -> Callable[[], Awaitable[str]]:
        async def kill_and_restart() -> str:
            process = self.services[service]
            process.kill()
            note = f"SIGKILL to pid, restarted on port {process.port}"
            if service == "notifier":
                # The mail it held (claimed, maybe handed to the server, not yet recorded as sent)
                # is sent again once the claim's lease runs out, with the same Message-ID.
                held = await fetch(
                    self.databases["notifier"], "SELECT message_id FROM deliveries WHERE status = 'sending'"
                )
                self.held_at_kill |= {str(r["message_id"]) for r in held}
                note += f"; it held {len(held)} claimed deliveries"
            await asyncio.sleep(0.5)
            await start_service(process)
            return note

        return kill_and_restart

    async def smtp_outage(self, seconds: float) -> Fault:
        fault = Fault("smtp_down", at_s=self.elapsed())
        log(f"chaos: SMTP sink down for {seconds:g} s at {fault.at_s} s")
        self.sink.stop()
        await asyncio.sleep(seconds)
        self.sink.start()
        await self.sink.wait_ready()
        fault.recovered_s = self.elapsed()
        fault.note = f"the SMTP server refused connections for {seconds:g} s"
        self.faults.append(fault)
        return fault

    async def run_faults(self, size: Size) -> None:
        """The schedule: each fault waits for its time and for the previous one's recovery. The
        SMTP outage runs beside the faults that follow it."""
        plan: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("rabbitmq_restart", self.restart_rabbitmq),
            ("kill_registry", self.killer("registry")),
            ("kill_exchange", self.killer("exchange")),
            ("postgres_restart", self.restart_postgres),
            ("smtp_down", lambda: self.smtp_outage(size.smtp_outage)),
            ("kill_notifier", self.killer("notifier")),
            ("rabbitmq_kill", self.kill_rabbitmq),
            ("kill_retention", self.killer("retention")),
        ]
        outage: asyncio.Task[Fault] | None = None
        for k, (name, action) in enumerate(plan):
            await asyncio.sleep(max(0.0, size.drive_seconds * (k + 1) / (len(plan) + 1) - self.elapsed()))
            if name == "smtp_down":
                outage = asyncio.ensure_future(action())
                await asyncio.sleep(0.5)
            else:
                await self.inject(name, action)
        if outage is not None:
            await outage

    async def close(self) -> None:
        for service in self.services.values():
            with contextlib.suppress(Exception):
                await service.stop()
        self.sink.stop()
        await self.rabbitmq.close()
        await self.postgres.close()


# -- settling and checking ------------------------------------------------------------------------------------


async def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


async def pending_outbox(system: System) -> dict[str, int]:
    found = {}
    for service, url in system.databases.items():
        rows = await fetch(url, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
        found[service] = int(rows[0]["n"])
    return found


async def delivery_rows(system: System) -> list[asyncpg.Record]:
    return await fetch(
        system.databases["notifier"],
        "SELECT request_reference, kind, recipient, status, message_id, attempts, claimed_until FROM deliveries",
    )


async def queue_depths(system: System) -> dict[str, int]:
    """Messages in every queue of the run (main, retry and dead-letter), read passively."""
    import aio_pika

    from shared.bus.topology import ServiceQueues

    depths: dict[str, int] = {}
    connection = await aio_pika.connect(system.rabbitmq.url, timeout=10)
    async with connection:
        for service in SERVICES:
            queues = ServiceQueues(system.infra.namespace, service, tuple(RETRY_DELAYS))
            names = [queues.queue, queues.dead_letter_queue]
            names += [queues.retry_queue(n) for n in range(1, len(RETRY_DELAYS) + 1)]
            for name in names:
                channel = await connection.channel()
                try:
                    declared = await channel.declare_queue(name, passive=True)
                    depths[name] = int(declared.declaration_result.message_count or 0)
                except Exception:
                    pass  # never declared: this service consumes nothing of that kind
                finally:
                    with contextlib.suppress(Exception):
                        await channel.close()
    return depths


async def dead_letters(system: System) -> list[dict[str, Any]]:
    from shared.bus.amqp import AmqpTransport
    from shared.bus.bus import DeadLetterQueue
    from shared.bus.topology import ServiceQueues

    transport = AmqpTransport(system.rabbitmq.url)
    await transport.start()
    letters = []
    try:
        await transport.wait_connected(10)
        for service in SERVICES:
            queue = DeadLetterQueue(transport, ServiceQueues(system.infra.namespace, service, tuple(RETRY_DELAYS)))
            with contextlib.suppress(Exception):
                for letter in await queue.list(1000):
                    letters.append(
                        {
                            "service": service,
                            "event_type": letter.event_type,
                            "error": letter.error,
                            "attempts": letter.attempts,
                        }
                    )
    finally:
        await transport.stop()
    return letters


async def travel_notifier(system: System) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{system.services['notifier'].url}/_dev/clock", json={"advance": "PT11M"})
        response.raise_for_status()


async def settle(system: System, expected_mail_count: int, size: Size, figures: dict[str, Any]) -> bool:
    """Wait until mail, outboxes and queues are quiet, or the timeout. A notifier killed while it
    held claims leaves rows ``sending`` for the lease (10 min): the notifier's clock is moved past it
    once nothing else moves, and that is reported."""
    began = time.monotonic()
    deadline = began + size.settle_timeout
    last_change, last_seen, travels = time.monotonic(), None, 0
    while True:
        try:
            rows = await delivery_rows(system)
            statuses = Counter(str(r["status"]) for r in rows)
            outbox = await pending_outbox(system)
            depths = await queue_depths(system)
            arrivals = len(system.sink.read())
        except Exception as exc:  # the system may still be waking up
            log(f"chaos: settle probe failed: {exc!r}")
            if time.monotonic() > deadline:
                figures["settle_s"], figures["unsettled"] = None, {"probe_failed": repr(exc)}
                return False
            await asyncio.sleep(1)
            continue
        busy = {k: v for k, v in depths.items() if v and not k.endswith(".dlq")}
        quiet = (
            statuses.get("sent", 0) >= expected_mail_count
            and not statuses.get("queued")
            and not statuses.get("sending")
            and arrivals >= statuses.get("sent", 0)
            and not any(outbox.values())
            and not busy
        )
        if quiet:
            figures["settle_s"] = round(time.monotonic() - began, 1)
            figures["notifier_clock_travels"] = travels
            return True
        seen = (tuple(sorted(statuses.items())), tuple(sorted(outbox.items())), tuple(sorted(busy.items())), arrivals)
        if seen != last_seen:
            last_seen, last_change = seen, time.monotonic()
        stuck_sending = statuses.get("sending", 0) and not statuses.get("queued") and not any(outbox.values())
        if stuck_sending and time.monotonic() - last_change > 10 and travels < 2:
            log(f"chaos: {statuses['sending']} deliveries held by a killed notifier's claim; its clock travels 11 min")
            await travel_notifier(system)
            travels += 1
            last_change = time.monotonic()
        if int(time.monotonic() - began) % 15 == 0:
            log(f"chaos: settling: deliveries {dict(statuses)}, outbox {outbox}, queues {busy}, sink {arrivals}")
        if time.monotonic() > deadline:
            figures["settle_s"] = None
            figures["notifier_clock_travels"] = travels
            figures["unsettled"] = {
                "deliveries": dict(statuses),
                "outbox": outbox,
                "queues": busy,
                "sink_arrivals": arrivals,
            }
            return False
        await asyncio.sleep(1)


async def check(system: System, world: World, lives: list[Life], tokens: Tokens) -> tuple[list[str], dict[str, Any]]:
    """Every guarantee, as a list of problems (empty when all hold) and the figures."""
    problems: list[str] = []
    figures: dict[str, Any] = {}
    urls = system.urls()
    by_reference = {life.reference: life for life in lives if life.reference}

    unfinished = [life for life in lives if not life.finished]
    for life in unfinished[:20]:
        problems.append(f"life {life.index} ({life.scenario}) did not finish: {life.error}")

    # Requests: each in its final state, and no other request (no duplicate from a retried POST).
    stored = await fetch(system.databases["exchange"], "SELECT id, reference, state FROM requests")
    states = {str(r["id"]): str(r["state"]) for r in stored}
    wrong = [
        f"{life.reference}: {states.get(life.id)} instead of {FINAL_STATE[life.scenario]}"
        for life in lives
        if life.id and states.get(life.id) != FINAL_STATE[life.scenario]
    ]
    problems += [f"request not in its final state: {w}" for w in wrong[:20]]
    extra = sorted(set(states) - {life.id for life in lives})
    if extra:
        problems.append(f"{len(extra)} request(s) in the exchange that no life owns (duplicates): {extra[:5]}")
    async with httpx.AsyncClient(timeout=30) as client:
        sample = [life for life in lives if life.id][:: max(1, len(lives) // 50)]
        for life in sample:  # the API agrees with the database
            seen = await client.get(
                f"{urls['exchange']}/requests/{life.id}", headers={"Authorization": f"Bearer {life.requester.token}"}
            )
            if seen.status_code != 200 or seen.json()["state"] != FINAL_STATE[life.scenario]:
                problems.append(f"the API shows {life.reference} as {seen.status_code} {seen.text[:200]}")
    figures["requests"] = {
        "planned": len(lives),
        "finished": len(lives) - len(unfinished),
        "in_exchange": len(states),
        "by_final_state": dict(Counter(states.values())),
        "by_life": dict(Counter(life.scenario for life in lives)),
    }

    # E-mails: expected from the rules; per (request, kind, recipient) in the notifier's deliveries;
    # per (request, recipient) and per Message-ID at the SMTP sink.
    expected = Counter(
        (life.reference, kind, recipient.lower())
        for life in lives
        if life.reference
        for kind, recipient in expected_mails(world, life)
    )
    rows = await delivery_rows(system)
    recorded = Counter((r["request_reference"], r["kind"], (r["recipient"] or "").lower()) for r in rows)
    not_sent = [r for r in rows if r["status"] != "sent"]
    missing = expected - recorded
    unexpected = recorded - expected
    arrivals = system.sink.read()
    at_sink = Counter(a["message_id"] for a in arrivals)
    ids = {r["message_id"]: r for r in rows}
    duplicates = {m: n for m, n in at_sink.items() if n > 1}
    never_arrived = [m for m, r in ids.items() if r["status"] == "sent" and m not in at_sink]
    strangers = [m for m in at_sink if m not in ids]
    sink_pairs = Counter((a["reference"], rcpt.lower()) for a in arrivals for rcpt in a["rcpt"])
    expected_pairs = Counter((ref, rcpt) for (ref, _kind, rcpt), n in expected.items() for _ in range(n))
    if missing:
        problems.append(f"{sum(missing.values())} expected e-mail(s) never recorded: {list(missing)[:5]}")
    if unexpected:
        problems.append(f"{sum(unexpected.values())} unexpected delivery row(s): {list(unexpected)[:5]}")
    if not_sent:
        problems.append(
            f"{len(not_sent)} deliveries not sent: {Counter(str(r['status']) for r in not_sent)}, "
            f"e.g. {dict(not_sent[0])}"
        )
    # A notifier killed between handing mail to the server and recording it sends that mail again
    # after the claim's lease, with the same Message-ID (ARCHITECTURE.md: "a retry is recognisable").
    # Such doubles are counted and reported apart; any other double is a bug.
    explained = {m: n for m, n in duplicates.items() if m in system.held_at_kill and n == 2}
    unexplained = {m: n for m, n in duplicates.items() if m not in explained}
    if unexplained:
        problems.append(
            f"{len(unexplained)} e-mail(s) delivered more than once, not explained by the notifier's kill: "
            f"{list(unexplained.items())[:5]}"
        )
    if never_arrived:
        problems.append(
            f"{len(never_arrived)} e-mail(s) marked sent never reached the SMTP server: {never_arrived[:5]}"
        )
    if strangers:
        problems.append(f"{len(strangers)} e-mail(s) at the SMTP server that no delivery names: {strangers[:5]}")
    for message_id, count in explained.items():  # the explained doubles, once more per recipient
        row = ids[message_id]
        expected_pairs[(row["request_reference"], (row["recipient"] or "").lower())] += count - 1
    if sink_pairs != expected_pairs:
        lacking, surplus = expected_pairs - sink_pairs, sink_pairs - expected_pairs
        problems.append(
            f"at the SMTP server per (request, recipient): {sum(lacking.values())} missing {list(lacking)[:3]}, "
            f"{sum(surplus.values())} extra {list(surplus)[:3]}"
        )
    unknown_refs = {a["reference"] for a in arrivals} - set(by_reference)
    if unknown_refs:
        problems.append(f"e-mails about requests no life made: {sorted(unknown_refs, key=str)[:5]}")
    figures["emails"] = {
        "expected": sum(expected.values()),
        "delivery_rows": len(rows),
        "delivered": len(arrivals),
        "distinct_message_ids": len(at_sink),
        "duplicates": sum(n - 1 for n in duplicates.values()),
        "duplicates_held_by_killed_notifier": sum(n - 1 for n in explained.values()),
        "held_by_killed_notifier": len(system.held_at_kill),
        "missing": sum(missing.values()),
        "unexpected": sum(unexpected.values()),
        "retried_sends": sum(max(0, int(r["attempts"]) - 1) for r in rows),
        "by_kind": dict(Counter(str(r["kind"]) for r in rows)),
    }

    # Retention: every closed or withdrawn request has its deletion deadline.
    commission = tokens.sign(
        user_id=uuid.uuid4(), authority_id=uuid.uuid4(), country="EU", language="en", authority_roles=["commission"]
    )
    without: list[str] = []
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {commission}"}) as client:
        for life in lives:
            if not life.id:
                continue
            response = await client.get(f"{urls['retention']}/retention/requests/{life.id}")
            body = response.json() if response.status_code == 200 else {}
            if response.status_code != 200 or body.get("deadline") is None or body.get("phase") != "closed":
                without.append(f"{life.reference}: {response.status_code} {str(body)[:200] or response.text[:200]}")
    if without:
        problems.append(f"{len(without)} closed request(s) without a deletion deadline: {without[:5]}")
    figures["deadlines"] = {"checked": sum(1 for life in lives if life.id), "missing": len(without)}

    # Outboxes, queues, dead letters.
    outbox = await pending_outbox(system)
    if any(outbox.values()):
        problems.append(f"outbox rows still pending: {outbox}")
    depths = await queue_depths(system)
    busy = {k: v for k, v in depths.items() if v and not k.endswith(".dlq")}
    if busy:
        problems.append(f"messages left in queues: {busy}")
    letters = await dead_letters(system)
    for letter in letters[:10]:
        problems.append(f"an unexplained dead letter: {letter}")
    figures["outbox_pending"] = outbox
    figures["dead_letters"] = len(letters)
    figures["dead_letter_sample"] = letters[:10]
    return problems, figures


# -- the run ---------------------------------------------------------------------------------------------------


async def report_progress(driver: Driver, lives: list[Life]) -> None:
    while True:
        await asyncio.sleep(15)
        log(
            f"chaos: {driver.completed}/{len(lives)} lives done, {driver.stats.http_calls} calls, "
            f"{driver.stats.retried_calls} retried, {len(driver.stats.errors)} failed"
        )


@dataclass
class Report:
    problems: list[str]
    figures: dict[str, Any]
    logs: dict[str, str]


async def fault_run(size: Size, tokens: Tokens | None = None) -> Report:
    """Drive ``size.requests`` lives through the faults, settle, check. Owns and removes
    everything it starts, also on failure. ``tokens``: a JWKS already served, else one of its own."""
    logging.getLogger("aio_pika").setLevel(logging.CRITICAL)
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    own_tokens = tokens is None
    infra = Infra(tokens=tokens or Tokens(), amqp="", server_url="")
    if own_tokens:
        infra.tokens.start()
    system = System(infra)
    figures: dict[str, Any] = {}
    try:
        world = build_world(infra.tokens, authorities_per_country=2, handlers_per_authority=1)
        started = time.monotonic()
        await system.start(world)
        figures["start_s"] = round(time.monotonic() - started, 1)
        lives = plan_lives(world, size.requests)
        stats = DriveStats()
        driver = Driver(world, system.urls(), size, stats)
        drive_started = time.monotonic()
        progress = asyncio.ensure_future(report_progress(driver, lives))
        try:
            drive = asyncio.ensure_future(driver.drive(lives))
            faults = asyncio.ensure_future(system.run_faults(size))
            await asyncio.gather(drive, faults)
        finally:
            progress.cancel()
            await driver.client.close()
        drive_s = time.monotonic() - drive_started
        figures["drive_s"] = round(drive_s, 1)
        # Settling waits for the mail of the lives that finished: a failed life is reported as such,
        # and waiting for its mail would only hold the run until the timeout.
        expected_count = sum(len(expected_mails(world, life)) for life in lives if life.finished)
        settled = await settle(system, expected_count, size, figures)
        problems, checked = await check(system, world, lives, infra.tokens)
        if not settled:
            problems.insert(
                0, f"the system did not settle within {size.settle_timeout:g} s: {figures.get('unsettled')}"
            )
        figures.update(checked)
        figures["http"] = {
            "calls": stats.http_calls,
            "retried": stats.retried_calls,
            "reconciled_transitions": stats.reconciled_transitions,
            "retried_creations": stats.retried_creations,
            "lives_per_s": round(len(lives) / drive_s, 2),
        }
        figures["faults"] = [fault.__dict__ for fault in sorted(system.faults, key=lambda f: f.at_s)]
        problems += [
            f"the system did not recover from {f.name}: {f.note}" for f in system.faults if f.recovered_s is None
        ]
        problems += stats.errors[:10] if stats.errors and not any("did not finish" in p for p in problems) else []
        return Report(problems, figures, {name: s.tail(40) for name, s in system.services.items()})
    finally:
        await system.close()
        if own_tokens:
            infra.tokens.stop()
        shutil.rmtree(infra.workdir, ignore_errors=True)


async def run(infra: Infra, mode: Mode) -> Result:
    size = SIZES[mode.name]
    result = Result(
        "chaos",
        "Fault run: whole request lives through broker, database, service and SMTP faults",
        mode.name,
        sizes={
            "requests": size.requests,
            "concurrency": size.concurrency,
            "drive_seconds": size.drive_seconds,
            "smtp_outage_s": size.smtp_outage,
            "mix": dict(Counter(MIX)),
        },
        target="all requests final, each e-mail exactly once, all deadlines, empty outboxes and queues, no dead letter",
        ratio_means="not applicable: a correctness run (figures are counts and times)",
    )
    # The run's PostgreSQL and RabbitMQ are its own: the shared ones ``infra`` names are left alone.
    report = await fault_run(size, infra.tokens)
    result.figures = report.figures
    doubled = report.figures.get("emails", {}).get("duplicates")
    result.met = not report.problems and doubled == 0
    if doubled:
        result.notes.append(
            f"{doubled} e-mail(s) reached the SMTP server twice, each with the same Message-ID, each one the "
            "notifier held claimed when it was SIGKILLed (handed to the server, not yet recorded as sent): "
            "at-least-once across a crash, recognisable by Message-ID, not exactly once."
        )
    if report.problems:
        result.status = "ok"
        result.notes += [f"PROBLEM: {p}" for p in report.problems]
    emails = report.figures.get("emails", {})
    requests = report.figures.get("requests", {})
    result.headline = (
        f"{requests.get('finished')}/{requests.get('planned')} lives, {len(report.figures.get('faults', []))} faults, "
        f"{emails.get('delivered')}/{emails.get('expected')} e-mails, {emails.get('duplicates')} doubled, "
        f"settled in {report.figures.get('settle_s')} s"
    )
    result.notes.append(
        "PostgreSQL and RabbitMQ are the run's own (initdb cluster, private node), not the shared ones named in "
        "the machine stamp; the notifier's send rate is raised to 400/s and its retry delays to 1-5 s."
    )
    if report.figures.get("notifier_clock_travels"):
        result.notes.append(
            "The notifier was killed holding claimed deliveries; they wait for the claim lease (10 min): the run "
            "moved the notifier's clock 11 min forward instead of waiting."
        )
    return result
