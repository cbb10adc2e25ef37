"""The whole guide, end to end (issue 7): the four services as separate processes over real
RabbitMQ, PostgreSQL and an SMTP server on loopback; the journey of services/journey.py, once as
is and once with approval of requests and replies; and at the end no trace of the professional's
personal data in any service's database."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox

from services.journey import Endpoints, Journey, Maildir, text_of
from services.registry.bootstrap import CoordinatorSpec, bootstrap_database
from shared.bus.amqp import AmqpTransport
from shared.bus.topology import ServiceQueues
from shared.settings import SERVICES, Settings
from tests.conftest import _asyncpg_dsn
from tests.support import delete_namespace, wait_until

ROOT = Path(__file__).resolve().parents[2]
# The ASCII part of the professional's name (services.journey.SUBJECT_MARKER): JSON logs escape the "Ó".
MARKER = "Briain-Marker"


def log_file(path: Path) -> BinaryIO:
    return path.open("wb")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class System:
    endpoints: Endpoints
    maildir: Maildir
    settings: Settings
    databases: dict[str, str]  # each service's own PostgreSQL database


@asynccontextmanager
async def system(tmp_path: Path, rabbitmq, postgres, namespace: str) -> AsyncIterator[System]:  # type: ignore[no-untyped-def]
    maildir = tmp_path / "mail"
    smtp = Controller(Mailbox(maildir), hostname="127.0.0.1", port=free_port())
    smtp.start()
    ports = {service: free_port() for service in SERVICES}
    databases = {service: await postgres.create() for service in SERVICES}
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMI_")}
    env.update(
        IMI_ENVIRONMENT="development",
        IMI_DATA_DIR=str(tmp_path / "data"),
        IMI_BROKER_URL=rabbitmq.url,
        IMI_BUS_NAMESPACE=namespace,
        IMI_BUS_RETRY_DELAYS="[0.5, 1]",
        IMI_OUTBOX_POLL_INTERVAL="0.5",
        IMI_REGISTRY_URL=f"http://127.0.0.1:{ports['registry']}",
        IMI_SMTP_PORT=str(smtp.port),
        IMI_RETENTION_SCAN_INTERVAL="1",
        IMI_LOG_FORMAT="json",
        **{f"IMI_{s.upper()}_DATABASE_URL": url for s, url in databases.items()},
    )
    logs = {}
    processes = []
    for service in SERVICES:
        logs[service] = log_file(tmp_path / f"{service}.log")
        processes.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services",
                "serve",
                service,
                "--migrate",
                cwd=ROOT,
                env={**env, "IMI_HTTP_PORT": str(ports[service])},
                stdout=logs[service],
                stderr=asyncio.subprocess.STDOUT,
            )
        )
    endpoints = Endpoints(*(f"http://127.0.0.1:{ports[s]}" for s in SERVICES))
    settings = Settings(data_dir=tmp_path / "data", registry_database_url=databases["registry"])
    try:
        async with httpx.AsyncClient(timeout=2) as client:

            async def ready() -> bool:
                urls = (endpoints.registry, endpoints.exchange, endpoints.notifier, endpoints.retention)
                try:
                    answers = [await client.get(f"{url}/health/ready") for url in urls]
                except httpx.TransportError:
                    return False
                return all(answer.status_code == 200 for answer in answers)

            await wait_until(ready, timeout=60, interval=0.3, message="four services ready")
        yield System(endpoints, Maildir(maildir), settings, databases)
        # No trace of the purged personal data: not in any database, queue or log (rule P2, issue 9).
        for service, url in databases.items():
            assert not await marker_in_database(url), f"personal data left in the {service} database"
        assert not await marker_in_queues(rabbitmq.url, namespace), "personal data left in a queue"
        for service in SERVICES:
            logs[service].flush()
            assert MARKER not in (tmp_path / f"{service}.log").read_text(errors="replace"), service
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
        for log in logs.values():
            log.close()
        smtp.stop()
        await delete_namespace(rabbitmq.url, namespace, [0.5, 1])


async def marker_in_database(url: str) -> bool:
    """Every row of every table, as text, searched for the professional's name."""
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        tables = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for table in tables:
            found = await connection.fetchval(
                f'SELECT count(*) FROM "{table["tablename"]}" t WHERE t::text LIKE $1', f"%{MARKER}%"
            )
            if found:
                return True
        return False
    finally:
        await connection.close()


async def marker_in_queues(amqp_url: str, namespace: str) -> bool:
    """Every message still in any of the system's queues, read without taking it."""
    transport = AmqpTransport(amqp_url)
    await transport.start()
    try:
        assert await transport.wait_connected(10)
        for service in SERVICES:
            queues = ServiceQueues(namespace, service, (0.5, 1))
            names = [queues.queue, queues.dead_letter_queue, queues.retry_queue(1), queues.retry_queue(2)]
            for name in names:
                try:
                    messages = await transport.browse(name, 10_000)
                except Exception:  # a queue that was never declared holds nothing
                    continue
                if any(MARKER.encode() in m.body for m in messages):
                    return True
        return False
    finally:
        await transport.stop()


def journey_for(running: System, *, approvals: bool) -> Journey:
    async def bootstrap(coordinators: list[tuple[str, str]], commission_email: str) -> dict[str, str]:
        created = await bootstrap_database(
            running.settings,
            commission_email=commission_email,
            coordinators=[CoordinatorSpec(country, email) for country, email in coordinators],
        )
        return {entry.country: entry.username for entry in created}

    return Journey(
        running.endpoints, running.maildir, bootstrap, say=lambda _line: None, approvals=approvals, timeout=60
    )


STATES = {
    False: [
        "draft",
        "awaiting_acceptance",
        "in_progress",
        "answered",
        "additional_information_requested",
        "additional_information_refused",
        "referred",
        "closed",
    ],
    True: [
        "draft",
        "awaiting_request_approval",  # rule E3: the Irish coordinator approves the request …
        "awaiting_acceptance",
        "in_progress",
        "awaiting_reply_approval",  # … and the Romanian coordinator the reply
        "answered",
        "additional_information_requested",
        "additional_information_refused",
        "referred",
        "closed",
    ],
}


@pytest.mark.parametrize("approvals", [False, True], ids=["as-is", "with-approvals"])
async def test_the_guide_end_to_end_across_the_four_services(tmp_path, rabbitmq, postgres, namespace, approvals):
    """Issue 7, item 1, step by step; services/journey.py makes the calls (and stops with a
    JourneyError on any answer but the expected status), this test checks what each step showed."""
    async with system(tmp_path, rabbitmq, postgres, namespace) as running:
        journey = journey_for(running, approvals=approvals)
        result = await journey.run_all()
        seen, accounts, authorities = result.seen, result.accounts, result.authorities

        # Bootstrap: RO and IE national coordinators (and the Commission's helpdesk) exist, logged in (A2).
        assert {"ro_coordinator", "ie_coordinator", "commission"} <= set(accounts)
        assert authorities["ro_coordinator"] != authorities["ie_coordinator"]
        # Temporary passwords by e-mail without the user name (rule S11); every first user logged in
        # with it, chose a password and a security code (S12).
        first_users = ["ro_coordinator", "ie_coordinator", "commission", "college_first", "ro_handler"]
        first_users += ["ro_allocator", "ie_handler"]
        for key in first_users:
            mail = result.mails[f"{key}:temporary_password"]
            assert accounts[key].username not in text_of(mail) + str(mail["Subject"])
            assert accounts[key].access_token and len(accounts[key].security_code) == 12
        # The regional college's profile edited: informal name, profile (the English translation
        # flagged for renewal, S1), languages, contacts, keywords (S2, S3); then translated anew.
        edited = seen["college_edited"]
        assert edited["informal_name"].startswith("Colegiul regional al medicilor din Cluj")
        assert {t["language"]: t["status"] for t in edited["translations"]} == {"en": "outdated"}
        assert sorted(edited["languages"]) == ["en", "fr", "ro"]
        assert edited["phone"] == "+40 264 000 111"
        assert edited["keywords"] == {
            "economic_activity": ["Q"],
            "policy_area": ["public_health"],
            "professional_qualifications": ["doctor_of_medicine", "specialised_doctor"],
        }
        assert seen["college_retranslated"]["shown"]["status"] == "current"
        # The national college linked (S4); colleagues with per-area roles (S9); allocation on (S8).
        assert seen["college_linked"]["links"] == [authorities["national_college"]]
        assert seen["ro_handler_user"]["roles"] == [{"role": "request_handler", "area": "professional_qualifications"}]
        assert seen["ro_allocator_user"]["roles"] == [{"role": "allocator", "area": "professional_qualifications"}]
        assert seen["allocation"]["allocation_enabled"] is True
        # The Irish handler found the college searching in English, and reads it in English.
        found = seen["search_result"]
        assert found["id"] == authorities["college"]
        assert (found["language"], found["translated"], found["translation_status"]) == ("en", True, "current")
        # A professional-qualifications request in English, with personal data.
        assert seen["requester_view"]["area"] == "professional_qualifications"
        assert seen["requester_view"]["language"] == "en"
        assert any(MARKER in item["value"] for item in seen["requester_view"]["subject"])
        # The Romanian allocator alerted, in Romanian, and allocating (E2).
        alert = result.mails["allocator:request_received"]
        assert alert["To"] == accounts["ro_allocator"].email
        assert result.reference in str(alert["Subject"])
        assert alert["Content-Language"] == "ro"
        assert "cerere" in str(alert["Subject"]).lower()  # "A fost primită o nouă cerere"
        assert seen["responder_view"]["allocated_user_id"] == accounts["ro_handler"].user_id
        # The handler accepted and answered in Romanian: the questions shown in Romanian, the answers
        # and the reply's comment written in Romanian.
        responder, requester = seen["responder_view"], seen["requester_view"]
        assert responder["language"] == "ro"
        assert responder["questions"][0]["text"] != requester["questions"][0]["text"]
        assert {q["answer_language"] for q in requester["questions"]} == {"ro"}
        assert ("Diploma autentică, fără sancțiuni.", "ro") in {
            (m["text"], m["language"]) for m in requester["messages"]
        }
        # More asked, refused, referral, the coordinators' opinions, closure (E4) — with approvals on,
        # the request and the reply each approved by their coordinator first (E3).
        assert [t["to_state"] for t in seen["closed"]["transitions"] if t["from_state"] != t["to_state"]] == STATES[
            approvals
        ]
        assert set(seen["referred"]["referral_coordinator_ids"]) == {
            authorities["ro_coordinator"],
            authorities["ie_coordinator"],
        }
        # The linked national college and both coordinators see the request without personal data (P4).
        for key in ("national_first", "ro_coordinator", "ie_coordinator"):
            outside = seen[f"{key}_view"]
            assert outside["id"] == result.request_id and outside["state"] == "closed"
            assert outside["access"] in ("overview", "details")
            assert not outside.get("subject") and MARKER not in str(outside)
        # No personal data in any e-mail.
        for message in running.maildir.messages():
            assert MARKER not in str(message)
        # Before the purge the personal data are in the exchange's database, where the search below
        # and the one at the end of system() look for them.
        assert await marker_in_database(running.databases["exchange"])

        # Six months and a day later: the purge, confirmed; the retention log verifies (P2). On leaving
        # system(): no trace in any of the four databases, any queue or any log.
        after = await journey.six_months_later(result.request_id)
        assert after["status"]["status"] == "purged"
        assert after["view"]["personal_data_purged"] is True
        assert not after["view"]["subject"]
        assert after["verification"]["intact"] is True
        for service, url in running.databases.items():
            assert not await marker_in_database(url), f"personal data left in the {service} database"
