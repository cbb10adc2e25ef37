"""6. Retention: 100,000 requests past their deadline (``--quick``: 1,000) purged end to end.

The exchange's database gets N closed requests, closed six months and up to 20 hours ago (due,
not yet overdue), each with its personal data as the exchange stores it (four subject values,
three answers, a comment and the transitions that point at it), bulk-inserted with COPY; the retention service's
database gets each request's deadline as its handlers record it on closure (basis: the closure;
not yet settled). Both services run as containers run them (``python -m services serve``) on
PostgreSQL and RabbitMQ; the retention scheduler's own timer is set far off
(``IMI_RETENTION_SCAN_INTERVAL``) and one pass is run over the ops API
(``POST /retention/scheduler/run``, with a real commission token).

Timed from that call: ``ordered`` (the pass has settled the deadlines and issued the orders, 500
requests each), ``purged`` (the exchange has purged every request: ``requests.purged_at``) and
``confirmed`` (the retention service has recorded every confirmation, hash-chained in its purge
log). Then ``GET /retention/log/verify`` is timed.

Floor: a raw SQL purge of the same rows, in a copy of the exchange's database
(``CREATE DATABASE … TEMPLATE``): per 500 requests, one transaction deleting and updating exactly
what the exchange's purge deletes and updates.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import isodate

from bench.core import Mode, Result, log, safe_ratio
from bench.infra import Infra, ServiceProcess, asyncpg_dsn, migrate, services_running
from bench.lists import REQUEST_COLUMNS

PQ = "professional_qualifications"
QUESTIONS = ["pq.identity.document_matches", "pq.diploma.authentic", "pq.sanctions.any"]
BATCH = 500

FLOOR_PURGE = [
    "DELETE FROM subject_values WHERE request_id = ANY($1::uuid[])",
    "DELETE FROM answers WHERE request_id = ANY($1::uuid[]) AND personal_data",
    "DELETE FROM attachment_contents WHERE attachment_id IN"
    " (SELECT id FROM attachments WHERE request_id = ANY($1::uuid[]))",
    "DELETE FROM attachments WHERE request_id = ANY($1::uuid[])",
    "UPDATE transitions SET message_id = NULL WHERE request_id = ANY($1::uuid[])",
    "UPDATE referral_opinions SET message_id = NULL WHERE request_id = ANY($1::uuid[])",
    "DELETE FROM messages WHERE request_id = ANY($1::uuid[])",
    "UPDATE requests SET purged_at = now() WHERE id = ANY($1::uuid[])",
]


async def load(exchange_url: str, retention_url: str, count: int, seed: int = 6) -> list[uuid.UUID]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    authorities = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(200)]
    ids: list[uuid.UUID] = []
    exchange = await asyncpg.connect(asyncpg_dsn(exchange_url))
    retention = await asyncpg.connect(asyncpg_dsn(retention_url))
    try:
        message_id = 0
        for start in range(0, count, 10_000):
            requests, questions, subjects, answers, messages, transitions, deadlines = ([] for _ in range(7))
            for n in range(start, min(count, start + 10_000)):
                request_id = uuid.UUID(int=rng.getrandbits(128))
                ids.append(request_id)
                requester, responder = rng.sample(authorities, 2)
                user = uuid.uuid5(requester, "handler")
                # Due within the last day: past the deadline, not yet overdue (IMI_RETENTION_OVERDUE_AFTER).
                closed = now - isodate.Duration(months=6) - timedelta(minutes=rng.randint(10, 20 * 60))
                created = closed - timedelta(days=40)
                row = dict.fromkeys(REQUEST_COLUMNS)
                row.update(
                    id=request_id,
                    reference=f"REQ-{created.year}-{n:07d}",
                    area=PQ,
                    question_set_version=1,
                    state="closed",
                    requesting_authority_id=requester,
                    requester_user_id=user,
                    responding_authority_id=responder,
                    requester_language="en",
                    reply_date=(created + timedelta(days=30)).date(),
                    referral_coordinator_ids="[]",
                    created_at=created,
                    sent_at=created,
                    received_at=created,
                    accepted_at=created + timedelta(days=2),
                    answered_at=created + timedelta(days=20),
                    closed_at=closed,
                    version=6,
                )
                requests.append(tuple(row[c] for c in REQUEST_COLUMNS))
                questions += [(request_id, q, i, None) for i, q in enumerate(QUESTIONS)]
                subjects += [
                    (request_id, "family_name", f"Family{n}", True),
                    (request_id, "given_names", "Siobhan", True),
                    (request_id, "date_of_birth", "1980-05-17", True),
                    (request_id, "profession", "doctor", False),
                ]
                answered = created + timedelta(days=20)
                answers += [
                    (request_id, QUESTIONS[0], json.dumps("yes"), "ro", True, user, answered),
                    (request_id, QUESTIONS[1], json.dumps("yes"), "ro", False, user, answered),
                    (request_id, QUESTIONS[2], json.dumps("no"), "ro", False, user, answered),
                ]
                message_id += 1
                messages.append(
                    (message_id, request_id, "comment", "Please check this doctor.", "en", user, requester, created)
                )
                transitions += [
                    (request_id, "drafted", None, "draft", user, requester, created, message_id),
                    (request_id, "closed", "answered", "closed", user, requester, closed, None),
                ]
                deadlines.append((request_id, 6, "closed", "closed", "closure", closed, None, None, None, now))
            await exchange.copy_records_to_table("requests", records=requests, columns=REQUEST_COLUMNS)
            await exchange.copy_records_to_table(
                "request_questions",
                records=questions,
                columns=["request_id", "question_id", "position", "forwarded_to_request_id"],
            )
            await exchange.copy_records_to_table(
                "subject_values", records=subjects, columns=["request_id", "field_id", "value", "personal_data"]
            )
            await exchange.copy_records_to_table(
                "answers",
                records=answers,
                columns=[
                    "request_id",
                    "question_id",
                    "value",
                    "language",
                    "personal_data",
                    "answered_by",
                    "answered_at",
                ],
            )
            await exchange.copy_records_to_table(
                "messages",
                records=messages,
                columns=[
                    "id",
                    "request_id",
                    "kind",
                    "text",
                    "language",
                    "author_user_id",
                    "author_authority_id",
                    "created_at",
                ],
            )
            await exchange.copy_records_to_table(
                "transitions",
                records=transitions,
                columns=[
                    "request_id",
                    "action",
                    "from_state",
                    "to_state",
                    "actor_user_id",
                    "actor_authority_id",
                    "at",
                    "message_id",
                ],
            )
            await retention.copy_records_to_table(
                "request_deadlines",
                records=deadlines,
                columns=[
                    "request_id",
                    "version",
                    "phase",
                    "last_event",
                    "basis",
                    "basis_at",
                    "period",
                    "due_at",
                    "order_id",
                    "updated_at",
                ],
            )
        await exchange.execute("SELECT setval(pg_get_serial_sequence('messages', 'id'), $1)", message_id)
        await exchange.execute("VACUUM ANALYZE")
        await retention.execute("VACUUM ANALYZE")
    finally:
        await exchange.close()
        await retention.close()
    return ids


async def floor_purge(url: str, ids: list[uuid.UUID]) -> float:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        started = time.perf_counter()
        for start in range(0, len(ids), BATCH):
            batch = ids[start : start + BATCH]
            async with connection.transaction():
                for statement in FLOOR_PURGE:
                    await connection.execute(statement, batch)
        elapsed = time.perf_counter() - started
        left = await connection.fetchval("SELECT count(*) FROM subject_values WHERE personal_data")
        assert left == 0, f"floor purge left {left} subject values"
        return elapsed
    finally:
        await connection.close()


async def run(infra: Infra, mode: Mode) -> Result:
    count = mode.pick(100_000, 1_000, 200)
    result = Result(
        "retention",
        "Retention: requests past their deadline purged end to end (order, purge, confirmation)",
        mode.name,
        sizes={"requests": count, "requests_per_order": BATCH},
        target="none set: time and rate reported next to the raw SQL purge",
        ratio_means="end-to-end seconds over raw SQL purge seconds",
    )
    exchange_db = await infra.create_database()
    retention_db = await infra.create_database()
    await migrate("exchange", exchange_db)
    await migrate("retention", retention_db)
    log(f"retention: loading {count} closed requests")
    started = time.perf_counter()
    ids = await load(exchange_db, retention_db, count)
    load_s = time.perf_counter() - started

    log("retention: floor (raw SQL purge in a copy)")
    copy = await infra.create_database(template=exchange_db)
    floor_s = await floor_purge(copy, ids)
    await infra.drop_database(copy)

    exchange = ServiceProcess(infra, "exchange", exchange_db)
    retention = ServiceProcess(infra, "retention", retention_db, IMI_RETENTION_SCAN_INTERVAL="86400")
    token = infra.tokens.sign(
        user_id=uuid.uuid4(), authority_id=uuid.uuid4(), country="BE", language="en", authority_roles=["commission"]
    )
    timeout = mode.pick(3600.0, 300.0, 120.0)
    phases: dict[str, Any] = {}
    async with services_running(exchange, retention):
        ex = await asyncpg.connect(asyncpg_dsn(exchange_db))
        rt = await asyncpg.connect(asyncpg_dsn(retention_db))
        try:
            log("retention: one scheduler pass over the API, then waiting for purges and confirmations")
            async with httpx.AsyncClient(base_url=retention.url, timeout=None) as client:
                started = time.perf_counter()
                response = await client.post("/retention/scheduler/run", headers={"Authorization": f"Bearer {token}"})
                phases["ordered_s"] = round(time.perf_counter() - started, 2)
                response.raise_for_status()
                phases["pass"] = response.json()
                purged = confirmed = 0
                samples = []
                while time.perf_counter() - started < timeout:
                    purged = await ex.fetchval("SELECT count(*) FROM requests WHERE purged_at IS NOT NULL")
                    confirmed = await rt.fetchval("SELECT count(*) FROM purge_items WHERE confirmed_at IS NOT NULL")
                    elapsed = time.perf_counter() - started
                    samples.append((round(elapsed, 1), purged, confirmed))
                    if purged >= count and "purged_s" not in phases:
                        phases["purged_s"] = round(elapsed, 2)
                    if confirmed >= count:
                        phases["confirmed_s"] = round(elapsed, 2)
                        break
                    await asyncio.sleep(0.25 if count <= 10_000 else 1.0)
                phases["purged"], phases["confirmed"] = purged, confirmed
                left = await ex.fetchval("SELECT count(*) FROM subject_values WHERE personal_data")
                phases["personal_subject_values_left"] = left
                t0 = time.perf_counter()
                verified = await client.get("/retention/log/verify", headers={"Authorization": f"Bearer {token}"})
                phases["log_verify_s"] = round(time.perf_counter() - t0, 2)
                phases["log_verify"] = verified.json()
                phases["progress"] = samples[:: max(1, len(samples) // 20)]
        finally:
            await ex.close()
            await rt.close()
    total = phases.get("confirmed_s")
    result.figures = {"load_s": round(load_s, 1), **phases}
    if total:
        result.figures["requests_per_s"] = round(count / total, 1)
    result.floor = {"raw_sql_purge_s": round(floor_s, 2), "requests_per_s": round(count / floor_s, 1)}
    result.ratio = safe_ratio(total, floor_s)
    result.met = None
    if not total:
        result.status = f"error: only {phases.get('confirmed')} of {count} confirmed within {timeout:g} s"
    result.headline = (
        f"{count} requests: ordered {phases.get('ordered_s')} s, purged {phases.get('purged_s')} s, "
        f"confirmed {total} s ({result.figures.get('requests_per_s')} requests/s)"
    )
    result.floor_headline = f"raw SQL {floor_s:.2f} s ({result.floor['requests_per_s']} requests/s)"
    return result
