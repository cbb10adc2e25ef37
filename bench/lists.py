"""4. Action lists and overviews with 1,000,000 requests stored (``--quick``: 10,000).

Requests are bulk-inserted with COPY (asyncpg) straight into the exchange's migrated tables
(``requests``, three ``request_questions`` each, and the read model ``known_authorities``): 3,000
competent authorities in 30 countries (``--quick``: 300) and a national coordinator per country,
some approving requests; how many requests an authority sends and receives follows a power law
(the largest take about 5 % of all); creation dates are spread over five years, so most requests
are closed and those of the last four months are in every open state, as in a live system.

Measured: ``services.exchange.queries.action_list`` and ``authority_overview`` (sent and received
boxes; each the first page of 20, as ``GET /actions`` and ``GET /requests`` serve them by default),
each in ``Messaging.transaction()`` as the routes call them, for
"typical users": request handlers of authorities drawn at random (and coordinators' users); the
handlers of the five largest authorities are reported apart. The first round warms caches and is
not counted.

Floor: per call, the rows it returned fetched by primary key with raw asyncpg
(``SELECT * FROM requests WHERE id = ANY($1)``): the cost of delivering the answer at all.

When ``PROPOSED`` holds statements (indexes a migration would add), the same calls are measured
again in a copy of the database (``CREATE DATABASE … TEMPLATE``) with those statements applied,
and reported as ``with_proposed_change``. The plans PostgreSQL chose are those of the statements
the calls really ran (captured as they ran, then explained with ``EXPLAIN (ANALYZE, BUFFERS)``).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from bench.core import Mode, Result, latency_summary, log, percentile, safe_ratio
from bench.infra import Infra, asyncpg_dsn, migrate

NEEDS_BROKER = False  # PostgreSQL only
PQ = "professional_qualifications"
QUESTIONS = ["pq.identity.document_matches", "pq.diploma.authentic", "pq.sanctions.any"]
NOW = datetime.now(UTC).replace(microsecond=0)
RECENT_DAYS = 120
YEARS = 5

# Indexes proposed for services/exchange, measured in a scratch copy. Empty: the overview indexes
# proposed here before are the exchange's migration 0003 now, so every phase has them.
PROPOSED: list[str] = []
PAGE_SIZE = 20

OLD_STATES = [
    ("closed", 93.0),
    ("withdrawn", 4.0),
    ("answered", 1.0),
    ("in_progress", 0.5),
    ("awaiting_acceptance", 0.5),
    ("draft", 0.5),
    ("referred", 0.3),
    ("additional_information_refused", 0.2),
]
RECENT_STATES = [
    ("draft", 4.0),
    ("awaiting_request_approval", 2.0),
    ("awaiting_acceptance", 15.0),
    ("in_progress", 30.0),
    ("awaiting_reply_approval", 2.0),
    ("answered", 12.0),
    ("additional_information_requested", 5.0),
    ("additional_information_refused", 2.0),
    ("referred", 1.0),
    ("closed", 25.0),
    ("withdrawn", 2.0),
]


class Authority:
    def __init__(self, rng: random.Random, country: str, language: str, kind: str) -> None:
        self.id = uuid.UUID(int=rng.getrandbits(128))
        self.country = country
        self.language = language
        self.kind = kind
        self.coordinator: Authority | None = None
        self.allocation = False
        self.approves = False
        self.handler = uuid.uuid5(self.id, "handler")


def build_authorities(rng: random.Random, count: int) -> tuple[list[Authority], list[Authority]]:
    from services.registry.reference import countries

    coordinators = []
    competent = []
    all_countries = countries()
    for country in all_countries:
        coordinator = Authority(rng, country.code, country.languages[0], "national_coordinator")
        coordinator.approves = rng.random() < 0.2
        coordinators.append(coordinator)
    for _ in range(count):
        country = rng.choice(all_countries)
        authority = Authority(rng, country.code, rng.choice(country.languages), "competent_authority")
        authority.coordinator = coordinators[all_countries.index(country)]
        authority.allocation = rng.random() < 0.2
        competent.append(authority)
    return competent, coordinators


def known_authority_rows(competent: list[Authority], coordinators: list[Authority]) -> list[tuple[Any, ...]]:
    import json

    rows = []
    for a in [*coordinators, *competent]:
        coordinator = a.kind != "competent_authority"
        rows.append(
            (
                a.id,
                1,
                a.kind,
                a.country,
                "active",
                a.language,
                f"{a.kind} {a.id.hex[:8]} official",
                f"{a.kind} {a.id.hex[:8]}",
                json.dumps([PQ]),
                a.allocation,
                json.dumps([]),
                json.dumps(
                    []
                    if coordinator or a.coordinator is None
                    else [{"area": PQ, "coordinator_id": str(a.coordinator.id), "full_view": False}]
                ),
                json.dumps(
                    [{"area": PQ, "referral": "yes", "approve_requests": a.approves, "approve_replies": a.approves}]
                    if coordinator
                    else []
                ),
            )
        )
    return rows


KNOWN_COLUMNS = [
    "id",
    "version",
    "kind",
    "country",
    "status",
    "language",
    "official_name",
    "informal_name",
    "areas",
    "allocation_enabled",
    "links",
    "request_coordinators",
    "coordinator_settings",
]
REQUEST_COLUMNS = [
    "id",
    "reference",
    "area",
    "question_set_version",
    "state",
    "requesting_authority_id",
    "requester_user_id",
    "responding_authority_id",
    "allocated_user_id",
    "requester_language",
    "reply_date",
    "proposed_reply_date",
    "parent_request_id",
    "approving_coordinator_id",
    "referral_coordinator_ids",
    "created_at",
    "sent_at",
    "received_at",
    "accepted_at",
    "answered_at",
    "closed_at",
    "overdue_notified_at",
    "purged_at",
    "version",
]


def _pick(rng: random.Random, table: list[tuple[str, float]]) -> str:
    states, weights = zip(*table, strict=True)
    return rng.choices(states, weights)[0]


def requests(rng: random.Random, count: int, competent: list[Authority]) -> Iterator[tuple[Any, ...]]:
    """``count`` request rows; requesters and responders drawn with power-law weights."""
    weights = [1 / (rank + 1) ** 0.8 for rank in range(len(competent))]
    order = competent[:]
    rng.shuffle(order)
    cumulative = []
    total = 0.0
    for w in weights:
        total += w
        cumulative.append(total)
    span = YEARS * 365 * 86400
    for number in range(count):
        requester = rng.choices(order, cum_weights=cumulative)[0]
        responder = rng.choices(order, cum_weights=cumulative)[0]
        while responder is requester:
            responder = rng.choices(order, cum_weights=cumulative)[0]
        created = NOW - timedelta(seconds=rng.randrange(span))
        recent = (NOW - created).days <= RECENT_DAYS
        state = _pick(rng, RECENT_STATES if recent else OLD_STATES)
        coordinator = requester.coordinator
        if state == "awaiting_request_approval" and not (coordinator and coordinator.approves):
            state = "awaiting_acceptance"
        if state == "awaiting_reply_approval" and not (responder.coordinator and responder.coordinator.approves):
            state = "answered"
        sent = None if state == "draft" else created + timedelta(hours=rng.randint(1, 48))
        received = sent if state not in ("draft", "awaiting_request_approval") else None
        accepted = (
            received + timedelta(days=rng.randint(0, 10))
            if received and state not in ("awaiting_acceptance", "withdrawn")
            else None
        )
        answered = (
            accepted + timedelta(days=rng.randint(1, 30))
            if accepted and state in ("answered", "closed", "additional_information_requested", "referred")
            else None
        )
        closed = (
            (answered or sent or created) + timedelta(days=rng.randint(0, 20))
            if state
            in (
                "closed",
                "withdrawn",
            )
            else None
        )
        reply = (created + timedelta(days=30)).date()
        approving = coordinator.id if state == "awaiting_request_approval" and coordinator else None
        if state == "awaiting_reply_approval" and responder.coordinator:
            approving = responder.coordinator.id
        referral = (
            [str(c.id) for c in (requester.coordinator, responder.coordinator) if c] if state == "referred" else []
        )
        allocated = responder.handler if responder.allocation and accepted and state != "closed" else None
        proposed: date | None = (
            reply + timedelta(days=14)
            if state in ("awaiting_acceptance", "in_progress") and rng.random() < 0.03
            else None
        )
        yield (
            uuid.UUID(int=rng.getrandbits(128)),
            f"REQ-{created.year}-{number:07d}",
            PQ,
            1,
            state,
            requester.id,
            requester.handler,
            responder.id,
            allocated,
            requester.language,
            reply,
            proposed,
            None,
            approving,
            "[" + ", ".join(f'"{c}"' for c in referral) + "]",
            created,
            sent,
            received,
            accepted,
            answered,
            closed,
            None,
            None,
            3,
        )


async def load(url: str, count: int, authorities: int, seed: int = 4) -> tuple[list[Authority], list[Authority]]:
    rng = random.Random(seed)
    competent, coordinators = build_authorities(rng, authorities)
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.copy_records_to_table(
            "known_authorities", records=known_authority_rows(competent, coordinators), columns=KNOWN_COLUMNS
        )
        batch: list[tuple[Any, ...]] = []
        for row in requests(rng, count, competent):
            batch.append(row)
            if len(batch) >= 50_000:
                await _copy_requests(connection, batch)
                batch = []
        await _copy_requests(connection, batch)
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    return competent, coordinators


async def _copy_requests(connection: asyncpg.Connection, batch: list[tuple[Any, ...]]) -> None:
    if not batch:
        return
    await connection.copy_records_to_table("requests", records=batch, columns=REQUEST_COLUMNS)
    await connection.copy_records_to_table(
        "request_questions",
        records=[(row[0], q, i, None) for row in batch for i, q in enumerate(QUESTIONS)],
        columns=["request_id", "question_id", "position", "forwarded_to_request_id"],
    )


def caller(authority: Authority, roles: list[str]) -> Any:
    from services.exchange.lifecycle import Caller
    from shared.auth import Principal

    return Caller(
        Principal.model_validate(
            {
                "sub": str(authority.handler),
                "authority": str(authority.id),
                "country": authority.country,
                "language": authority.language,
                "roles": {PQ: roles},
            }
        )
    )


async def measure(infra: Infra, url: str, users: dict[str, list[Any]], rounds: int) -> dict[str, Any]:
    """p50/p95/p99 of action_list and authority_overview per group of users, and their floors."""
    from services import load_definition
    from services.exchange import queries
    from shared.service import ServiceRuntime

    settings = infra.settings(exchange_database_url=url)
    runtime = ServiceRuntime(load_definition("exchange"), settings, verifier=_NoTokens())
    connection = await asyncpg.connect(asyncpg_dsn(url))
    out: dict[str, Any] = {}
    try:
        for group, callers in users.items():
            timings: dict[str, list[float]] = {"action_list": [], "overview_sent": [], "overview_received": []}
            floors: dict[str, list[float]] = {key: [] for key in timings}
            sizes: dict[str, list[int]] = {key: [] for key in timings}
            totals: dict[str, list[int]] = {key: [] for key in timings}
            for round_number in range(rounds + 1):
                for who in callers:
                    for key in timings:
                        async with runtime.messaging.transaction() as uow:
                            t0 = time.perf_counter()
                            if key == "action_list":
                                actions = await queries.action_list(uow, who, page=1, page_size=PAGE_SIZE)
                                ids = [item.request.id for item in actions.items]
                                total = actions.total
                            else:
                                box = queries.Box.sent if key == "overview_sent" else queries.Box.received
                                page = await queries.authority_overview(
                                    uow,
                                    who,
                                    authority_id=who.authority_id,
                                    box=box,
                                    state=None,
                                    area=None,
                                    page=1,
                                    page_size=PAGE_SIZE,
                                )
                                ids = [item.id for item in page.items]
                                total = page.total
                            elapsed = time.perf_counter() - t0
                        t0 = time.perf_counter()
                        await connection.fetch("SELECT * FROM requests WHERE id = ANY($1::uuid[])", ids)
                        floor_elapsed = time.perf_counter() - t0
                        if round_number:
                            timings[key].append(elapsed)
                            floors[key].append(floor_elapsed)
                            sizes[key].append(len(ids))
                            totals[key].append(total)
            out[group] = {
                key: {
                    **latency_summary(timings[key]),
                    "items_median": percentile(sizes[key], 50),
                    "items_max": max(sizes[key]) if sizes[key] else 0,
                    "total_median": percentile(totals[key], 50),
                    "total_max": max(totals[key]) if totals[key] else 0,
                    "floor": latency_summary(floors[key]),
                }
                for key in timings
            }
            everything = [t for v in timings.values() for t in v]
            out[group]["all_calls"] = latency_summary(everything)
            out[group]["all_calls_floor"] = latency_summary([t for v in floors.values() for t in v])
    finally:
        await connection.close()
        await runtime.engine.dispose()
    return out


class _NoTokens:
    async def verify(self, token: str) -> Any:
        raise RuntimeError("no HTTP here")


async def explain(infra: Infra, url: str, who: Any) -> dict[str, str]:
    """The plans PostgreSQL chooses for the statements the two calls really run for one (large)
    authority: the action list's page, and the received overview's count and page."""
    from sqlalchemy import event

    from services import load_definition
    from services.exchange import queries
    from shared.service import ServiceRuntime

    settings = infra.settings(exchange_database_url=url)
    runtime = ServiceRuntime(load_definition("exchange"), settings, verifier=_NoTokens())
    ran: list[tuple[str, Any]] = []

    def capture(_c: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        ran.append((statement, parameters))

    captured: dict[str, list[tuple[str, Any]]] = {}
    event.listen(runtime.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with runtime.messaging.transaction() as uow:
            await queries.action_list(uow, who, page=1, page_size=PAGE_SIZE)
            captured["action_list"], ran[:] = ran[-1:], []
            await queries.authority_overview(
                uow,
                who,
                authority_id=who.authority_id,
                box=queries.Box.received,
                state=None,
                area=None,
                page=1,
                page_size=PAGE_SIZE,
            )
            captured["overview_count"], captured["overview"] = ran[-2:-1], ran[-1:]
    finally:
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", capture)
        await runtime.engine.dispose()
    connection = await asyncpg.connect(asyncpg_dsn(url))
    plans = {}
    try:
        for name, [(statement, parameters)] in captured.items():
            rows = await connection.fetch("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + statement, *parameters)
            plans[name] = "\n".join(r[0] for r in rows)
    finally:
        await connection.close()
    return plans


async def run(infra: Infra, mode: Mode) -> Result:
    count = mode.pick(1_000_000, 10_000, 2_000)
    authorities = mode.pick(3_000, 300, 60)
    rounds = mode.pick(3, 3, 1)
    result = Result(
        "lists",
        "Action lists and overviews with many requests stored",
        mode.name,
        target="p95 < 50 ms for typical users (action_list and authority_overview)",
        ratio_means="typical users' p95 over the floor's p95 (the same rows fetched by primary key)",
    )
    url = await infra.create_database()
    await migrate("exchange", url)
    log(f"lists: loading {count} requests with COPY")
    started = time.perf_counter()
    competent, coordinators = await load(url, count, authorities)
    load_s = time.perf_counter() - started

    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        activity = {
            row["a"]: row["n"]
            for row in await connection.fetch(
                "SELECT a, count(*) AS n FROM (SELECT requesting_authority_id AS a FROM requests"
                " UNION ALL SELECT responding_authority_id FROM requests) s GROUP BY a"
            )
        }
        size = await connection.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
    finally:
        await connection.close()
    rng = random.Random(9)
    ranked = sorted(competent, key=lambda a: -activity.get(a.id, 0))
    typical = rng.sample(competent, mode.pick(30, 20, 6))
    users = {
        "typical": [
            caller(a, ["request_handler", "allocator"] if a.allocation else ["request_handler"]) for a in typical
        ]
        + [caller(c, ["request_handler", "data_administrator"]) for c in rng.sample(coordinators, mode.pick(6, 4, 2))],
        "largest": [caller(a, ["request_handler"]) for a in ranked[:5]],
    }
    log("lists: measuring")
    before = await measure(infra, url, users, rounds)
    plans = await explain(infra, url, users["largest"][0])
    figures: dict[str, Any] = {
        "load_s": round(load_s, 1),
        "database_size": size,
        "requests_of_largest_authorities": [activity.get(a.id, 0) for a in ranked[:5]],
        "requests_of_typical_authorities_median": percentile([activity.get(a.id, 0) for a in typical], 50),
        "as_is": before,
        "plans_as_is": plans,
    }
    if PROPOSED:
        log("lists: measuring again with the proposed indexes, in a copy")
        copy = await infra.create_database(template=url)
        connection = await asyncpg.connect(asyncpg_dsn(copy))
        try:
            started = time.perf_counter()
            for statement in PROPOSED:
                await connection.execute(statement)
            figures["proposed_change_build_s"] = round(time.perf_counter() - started, 1)
            await connection.execute("ANALYZE requests")
        finally:
            await connection.close()
        figures["with_proposed_change"] = await measure(infra, copy, users, rounds)
        figures["plans_with_proposed_change"] = await explain(infra, copy, users["largest"][0])
        figures["proposed_change"] = PROPOSED
        await infra.drop_database(copy)
    typical_figures = before["typical"]
    p95 = max(typical_figures[key]["p95_ms"] or 0 for key in ("action_list", "overview_sent", "overview_received"))
    floor_p95 = typical_figures["all_calls_floor"]["p95_ms"]
    result.sizes = {"requests": count, "request_questions": count * 3, "authorities": authorities + 30}
    result.figures = figures
    result.floor = {group: before[group]["all_calls_floor"] for group in before}
    result.ratio = safe_ratio(typical_figures["all_calls"]["p95_ms"], floor_p95)
    result.met = p95 < 50
    after = figures.get("with_proposed_change", {}).get("typical")
    overview_p95 = max(
        typical_figures["overview_sent"]["p95_ms"] or 0, typical_figures["overview_received"]["p95_ms"] or 0
    )
    result.headline = (
        f"{count} requests, typical users p95: action list {typical_figures['action_list']['p95_ms']} ms, "
        f"overview {overview_p95} ms"
        + (
            f"; with proposed indexes {after['action_list']['p95_ms']} / "
            f"{max(after['overview_sent']['p95_ms'] or 0, after['overview_received']['p95_ms'] or 0)} ms"
            if after
            else ""
        )
        + f"; largest authorities p95 {before['largest']['all_calls']['p95_ms']} ms"
    )
    result.floor_headline = f"rows by primary key p95 {floor_p95} ms"
    return result
