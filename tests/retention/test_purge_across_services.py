"""Issue 6, "done when", across the real services: the exchange and the retention service on their
own PostgreSQL databases, talking only over RabbitMQ, on one frozen clock (rule P2).

Requests full of personal data (subject, a free-text answer, comments, an attachment) are closed;
the clock moves past six months after the first closures; retention orders the purge and the
exchange carries it out. Plain SQL on the exchange's own database, its attachment storage (the
``attachment_contents`` table) included, shows the personal data of those requests gone and those
of a request closed later still there; no row of the retention database holds any of them. A
confirmation lost in the broker is ordered again and completes; a broken link in the purge log is
detected. If the exchange deleted nothing, the SQL assertions fail."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import isodate
from fastapi import FastAPI

from services import create_app, load_definition
from services.retention import purge_log
from services.retention.models import PurgeLogEntry
from services.retention.scheduler import run_pass
from shared.auth import Principal
from shared.migrations import upgrade
from shared.service import ServiceRuntime
from shared.settings import Settings
from tests.conftest import _asyncpg_dsn
from tests.exchange.world import ExchangeWorld, exchange_world
from tests.support import delete_namespace, wait_until

DELAYS = [0.2]
SIX_MONTHS = isodate.parse_duration("P6M")
QUESTIONS = ["pq.identity.document_matches", "pq.sanctions.details", "pq.diploma.authentic"]


class Ops:
    """Every token is the Commission's ops (the retention API is theirs, rule A3)."""

    async def verify(self, token: str) -> Principal:
        return Principal.model_validate(
            {"sub": "ops", "authority": "ec", "country": "BE", "authority_roles": ["commission"]}
        )


def pdf_with(marker: str) -> bytes:
    return (
        f"%PDF-1.4\n% {marker}-file\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".encode()
    )


async def closed_request_full_of_personal_data(world: ExchangeWorld, marker: str, reply_date: str) -> str:
    """The marker in the subject, a comment, a free-text answer, the reply, the closing comment and
    inside the bytes of an attachment."""
    request_id = await world.accepted_request(
        question_ids=QUESTIONS,
        reply_date=reply_date,
        comment=f"Please check {marker}-comment",
        subject={
            "family_name": f"{marker}-family",
            "given_names": f"{marker}-given",
            "date_of_birth": "1980-05-17",
            "profession": "doctor",
        },
    )
    upload = await world.call(
        "POST",
        f"/requests/{request_id}/attachments",
        "ro_handler",
        files={"file": (f"{marker}.pdf", pdf_with(marker), "application/pdf")},
    )
    assert upload.status_code == 201, upload.text
    answers = {QUESTIONS[0]: "yes", QUESTIONS[1]: f"{marker}-answer", QUESTIONS[2]: "yes"}
    saved = await world.call("PUT", f"/requests/{request_id}/answers", "ro_handler", json={"answers": answers})
    assert saved.status_code == 200, saved.text
    replied = await world.call("POST", f"/requests/{request_id}/reply", "ro_handler", json={"comment": f"{marker}-r"})
    assert replied.status_code == 200, replied.text
    closed = await world.call("POST", f"/requests/{request_id}/close", "ie_handler", json={"comment": f"{marker}-c"})
    assert closed.status_code == 200 and closed.json()["state"] == "closed", closed.text
    return request_id


class Database:
    """Plain SQL on one service's PostgreSQL database, beside the service."""

    def __init__(self, url: str) -> None:
        self.dsn = _asyncpg_dsn(url)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        connection = await asyncpg.connect(self.dsn)
        try:
            return await connection.fetchval(sql, *args)
        finally:
            await connection.close()

    async def tables_holding(self, text: str) -> set[str]:
        """Every table with a row whose text form holds ``text``, and ``attachment_contents`` when
        a stored file's bytes hold it (a bytea's text form is hex)."""
        connection = await asyncpg.connect(self.dsn)
        try:
            tables = [
                r["tablename"]
                for r in await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ]
            found = set()
            for table in tables:
                if await connection.fetchval(f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE $1', f"%{text}%"):
                    found.add(table)
            if "attachment_contents" in tables and await connection.fetchval(
                "SELECT count(*) FROM attachment_contents WHERE position($1::bytea in content) > 0", text.encode()
            ):
                found.add("attachment_contents")
            return found
        finally:
            await connection.close()

    async def personal_rows(self, request_id: str) -> dict[str, int]:
        """The request's rows of each kind of personal data, counted in the exchange's tables."""
        rid = uuid.UUID(request_id)
        queries = {
            "subject_values": "SELECT count(*) FROM subject_values WHERE request_id = $1",
            "personal_answers": "SELECT count(*) FROM answers WHERE request_id = $1 AND personal_data",
            "messages": "SELECT count(*) FROM messages WHERE request_id = $1",
            "attachments": "SELECT count(*) FROM attachments WHERE request_id = $1",
            "attachment_contents": "SELECT count(*) FROM attachment_contents c "
            "JOIN attachments a ON a.id = c.attachment_id WHERE a.request_id = $1",
        }
        return {kind: int(await self.fetchval(sql, rid)) for kind, sql in queries.items()}


def files_holding(directory: Path, text: str) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


@asynccontextmanager
async def retention_service(
    settings: Settings, world: ExchangeWorld
) -> AsyncIterator[tuple[ServiceRuntime, httpx.AsyncClient]]:
    """The retention service on its own database and the real broker, on the exchange's clock."""
    await upgrade(load_definition("retention").migrations, settings.database_url("retention"))
    app: FastAPI = create_app("retention", settings, clock=world.clock, verifier=Ops())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": "Bearer ops"}
        async with httpx.AsyncClient(transport=transport, base_url="http://retention", headers=headers) as client:
            yield app.state.runtime, client


def two_services_on_rabbitmq(
    amqp_url: str, namespace: str, data_dir: Path, exchange_url: str, retention_url: str
) -> Settings:
    """The exchange and the retention service on RabbitMQ, each on a PostgreSQL database of its own;
    the retention service's passes run when the test says, on the moved clock."""
    return Settings(
        data_dir=data_dir,
        broker_url=amqp_url,
        bus_namespace=namespace,
        bus_retry_delays=DELAYS,
        outbox_poll_interval=0.2,
        retention_scan_interval=3600,
        exchange_database_url=exchange_url,
        retention_database_url=retention_url,
    )


async def status_of(ops: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    response = await ops.get(f"/retention/requests/{request_id}")
    body: dict[str, Any] = response.json() if response.status_code == 200 else {}
    return body


async def statuses_are(ops: httpx.AsyncClient, request_ids: list[str], status: str) -> bool:
    found = [(await status_of(ops, r)).get("status") for r in request_ids]
    return found == [status] * len(request_ids)


async def test_personal_data_are_gone_from_the_exchange_database_and_storage_six_months_after_closure_rule_p2(
    rabbitmq, postgres, namespace, tmp_path
):
    exchange_url, retention_url = await postgres.create(), await postgres.create()
    settings = two_services_on_rabbitmq(rabbitmq.url, namespace, tmp_path, exchange_url, retention_url)
    exchange_db, retention_db = Database(exchange_url), Database(retention_url)
    run = uuid.uuid4().hex[:10]
    early_markers = [f"Early{n}x{run}" for n in (1, 2)]
    late_marker = f"Late3x{run}"
    try:
        async with exchange_world(settings, full_view=True) as world:
            async with retention_service(settings, world) as (retention, ops):
                early = [await closed_request_full_of_personal_data(world, m, "2026-04-01") for m in early_markers]
                first_closure = world.clock.now()
                world.clock.travel(timedelta(days=30))
                late = await closed_request_full_of_personal_data(world, late_marker, "2026-06-01")
                late_closure = world.clock.now()
                await wait_until(
                    lambda: statuses_are(ops, [*early, late], "scheduled"), timeout=30, message="deadlines known"
                )
                # Before: every kind of personal data is there, and the SQL below can see it.
                for request_id, marker in [*zip(early, early_markers, strict=True), (late, late_marker)]:
                    assert all(n >= 1 for n in (await exchange_db.personal_rows(request_id)).values())
                    assert {"subject_values", "answers", "messages", "attachment_contents"} <= (
                        await exchange_db.tables_holding(marker)
                    )

                # Six months and a day after the first closures: the late request has a month to go.
                world.clock.travel(first_closure + SIX_MONTHS + timedelta(days=1) - world.clock.now())
                result = await run_pass(retention, world.clock.now())
                assert result.orders_issued == 1
                await wait_until(lambda: statuses_are(ops, early, "purged"), timeout=30, message="purge confirmed")

                for request_id, marker in zip(early, early_markers, strict=True):
                    assert await exchange_db.personal_rows(request_id) == dict.fromkeys(
                        ("subject_values", "personal_answers", "messages", "attachments", "attachment_contents"), 0
                    )
                    assert await exchange_db.tables_holding(marker) == set(), marker
                    assert files_holding(tmp_path, marker) == []
                    # The non-personal skeleton stays, for statistics.
                    skeleton = await exchange_db.fetchval(
                        "SELECT state FROM requests WHERE id = $1 AND purged_at IS NOT NULL", uuid.UUID(request_id)
                    )
                    assert skeleton == "closed"
                assert all(n >= 1 for n in (await exchange_db.personal_rows(late)).values())
                assert {"subject_values", "answers", "messages", "attachment_contents"} <= (
                    await exchange_db.tables_holding(late_marker)
                )
                assert (await status_of(ops, late))["status"] == "scheduled"

                # The late request's deadline passes; its confirmation is lost in the broker.
                await retention.bus.stop_consuming()
                world.clock.travel(late_closure + SIX_MONTHS + timedelta(minutes=1) - world.clock.now())
                result = await run_pass(retention, world.clock.now())
                assert result.orders_issued == 1
                lost = await wait_until(
                    lambda: retention.transport.get(retention.queues.queue), timeout=30, message="confirmation queued"
                )
                await lost.ack()  # taken from the queue and never handled: lost
                assert await retention.transport.message_count(retention.queues.queue) == 0
                assert await exchange_db.tables_holding(late_marker) == set()  # the exchange did purge
                assert (await status_of(ops, late))["status"] == "ordered"  # retention never heard

            # Retention starts again and consumes; after the re-send wait the order goes out again.
            async with retention_service(settings, world) as (retention, ops):
                assert (await status_of(ops, late))["status"] == "ordered"
                world.clock.travel(timedelta(hours=1))  # retention_resend_after, PT1H
                result = await run_pass(retention, world.clock.now())
                assert result.orders_resent == 1
                await wait_until(lambda: statuses_are(ops, [late], "purged"), timeout=30, message="re-ordered purge")
                [purge] = (await status_of(ops, late))["purges"]
                assert purge["attempts"] == 2 and purge["deleted_count"] >= 5
                kinds = [e["kind"] for e in (await ops.get("/retention/log")).json() if e["request_id"] == late]
                assert kinds == ["ordered", "reordered", "confirmed"]
                report = (await ops.get("/retention/report")).json()
                assert (report["pending"], report["overdue"], report["log"]["intact"]) == (0, 0, True)
                assert sum(m["purged_requests"] for m in report["purges_per_month"]) == 3

                # No personal data in any row of the retention service's database.
                for marker in [*early_markers, late_marker]:
                    assert await retention_db.tables_holding(marker) == set()

                # A broken link: one entry altered and given a fresh hash; the next link no longer holds.
                async with retention.sessions() as session, session.begin():
                    entry = await session.get(PurgeLogEntry, 2)
                    assert entry is not None
                    entry.deleted_count = 0
                    entry.hash = purge_log.entry_hash(entry)
                verified = (await ops.get("/retention/log/verify")).json()
                assert verified["intact"] is False
                assert verified["first_broken"] == {"seq": 3, "reason": "chain_broken"}
                assert (await ops.get("/retention/report")).json()["log"]["intact"] is False
    finally:
        await delete_namespace(rabbitmq.url, namespace, DELAYS)
