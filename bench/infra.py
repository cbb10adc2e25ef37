"""The machine's PostgreSQL and RabbitMQ as the benchmarks use them, and the services run the way a
container runs them: ``python -m services serve <service>`` in a subprocess.

- PostgreSQL from ``IMI_BENCH_DATABASE_URL`` (else ``IMI_TEST_DATABASE_URL``, else
  ``postgresql+asyncpg://postgres@127.0.0.1:5432/postgres``): each run creates databases of its
  own (``imi_b_…``) and drops them at the end.
- RabbitMQ from ``IMI_BENCH_AMQP_URL`` (else ``IMI_TEST_AMQP_URL``, else
  ``amqp://guest:guest@127.0.0.1:5672/``): each run uses a namespace of its own
  (``IMI_BUS_NAMESPACE``) and deletes its exchange and queues at the end.
- Access tokens are real: EdDSA tokens signed with a key made for the run, whose public key a tiny
  HTTP server on loopback publishes as the JWKS the services fetch (``IMI_JWKS_URL``), exactly as
  they fetch the registry's. No test verifier is involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import make_url

from bench.core import log, rss_mib
from shared.bus.topology import ServiceQueues
from shared.settings import DEFAULT_PORTS, SERVICES, Settings

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
RETRY_DELAYS = [1.0, 5.0, 30.0]


def database_server_url() -> str:
    return os.environ.get(
        "IMI_BENCH_DATABASE_URL",
        os.environ.get("IMI_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"),
    )


def amqp_url() -> str:
    return os.environ.get(
        "IMI_BENCH_AMQP_URL", os.environ.get("IMI_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- tokens -----------------------------------------------------------------------------------------


class Tokens:
    """Signs access tokens as the registry does (EdDSA, kid = RFC 7638 thumbprint) and serves the
    public key as a JWKS on loopback."""

    def __init__(self) -> None:
        from services.registry.tokens import key_id, public_jwk

        self.key = Ed25519PrivateKey.generate()
        self.kid = key_id(self.key.public_key())
        self.jwks = json.dumps({"keys": [public_jwk(self.key.public_key())]}).encode()
        self.port = free_port()
        self._server: ThreadingHTTPServer | None = None

    @property
    def private_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def sign(
        self,
        *,
        user_id: uuid.UUID | str,
        authority_id: uuid.UUID | str,
        country: str,
        language: str,
        roles: dict[str, list[str]] | None = None,
        authority_roles: Sequence[str] = (),
        ttl: float = 4 * 3600,
    ) -> str:
        now = int(time.time())
        claims = {
            "sub": str(user_id),
            "authority": str(authority_id),
            "country": country,
            "language": language,
            "roles": roles or {},
            "authority_roles": list(authority_roles),
            "coordinator": None,
            "iss": "imi-registry",
            "aud": "imi",
            "iat": now,
            "exp": now + int(ttl),
            "typ": "access",
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": self.kid})

    def start(self) -> None:
        body = self.jwks

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# -- PostgreSQL and RabbitMQ ------------------------------------------------------------------------


@dataclass
class Infra:
    """Databases and a broker namespace for one benchmark run, removed again by :meth:`close`."""

    server_url: str = field(default_factory=database_server_url)
    amqp: str = field(default_factory=amqp_url)
    namespace: str = field(default_factory=lambda: f"b{uuid.uuid4().hex[:10]}")
    created: list[str] = field(default_factory=list)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="imi-bench-")))
    tokens: Tokens = field(default_factory=Tokens)

    async def check(self, *, broker: bool = True, patience: float = 180) -> None:
        """Fail, saying what to start, when PostgreSQL or (if needed) RabbitMQ does not answer. The
        broker is waited for, and for a quiet spell after its last start: other test runs on the
        machine stop and start it."""
        try:
            connection = await asyncpg.connect(asyncpg_dsn(self.server_url), timeout=5)
            await connection.close()
        except Exception as exc:
            raise SystemExit(
                f"no PostgreSQL at {self.server_url} ({exc!r}): start it or set IMI_BENCH_DATABASE_URL"
            ) from exc
        if not broker:
            return
        deadline = time.monotonic() + patience
        while True:
            error: Exception | None = None
            try:
                connection = await aio_pika.connect(self.amqp, timeout=5)
                await connection.close()
            except Exception as exc:
                error = exc
            quiet = broker_quiet_for()
            if error is None and (quiet is None or quiet >= 20):
                return
            if time.monotonic() > deadline:
                if error is not None:
                    raise SystemExit(f"no RabbitMQ at {self.amqp} ({error!r}): start it or set IMI_BENCH_AMQP_URL")
                log(f"RabbitMQ restarted {quiet:.0f} s ago; going on anyway")
                return
            await asyncio.sleep(2)

    async def create_database(self, template: str | None = None) -> str:
        """A new empty database (or a copy of ``template``, a URL of one of ours); its SQLAlchemy URL."""
        name = f"imi_b_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(asyncpg_dsn(self.server_url))
        try:
            if template is None:
                await admin.execute(f'CREATE DATABASE "{name}"')
            else:
                source = make_url(template).database
                await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
        finally:
            await admin.close()
        self.created.append(name)
        return make_url(self.server_url).set(database=name).render_as_string(hide_password=False)

    async def drop_database(self, url: str) -> None:
        name = make_url(url).database
        admin = await asyncpg.connect(asyncpg_dsn(self.server_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        with contextlib.suppress(ValueError):
            self.created.remove(str(name))

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "broker_url": self.amqp,
            "bus_namespace": self.namespace,
            "bus_retry_delays": RETRY_DELAYS,
            "data_dir": self.workdir,
            "jwks_url": self.tokens.jwks_url,
        }
        values.update(overrides)
        return Settings(**values)

    async def postgres_info(self) -> dict[str, Any]:
        connection = await asyncpg.connect(asyncpg_dsn(self.server_url))
        try:
            info = {}
            for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers", "max_connections", "jit"):
                info[name] = await connection.fetchval(f"SHOW {name}")
            return info
        finally:
            await connection.close()

    def rabbitmq_version(self) -> str | None:
        with contextlib.suppress(Exception):
            found = subprocess.run(["rabbitmqctl", "version"], capture_output=True, text=True, timeout=20)
            return found.stdout.strip() or None
        return None

    async def close(self) -> None:
        for name in list(self.created):
            with contextlib.suppress(Exception):
                await self.drop_database(make_url(self.server_url).set(database=name).render_as_string(False))
        with contextlib.suppress(Exception):
            await delete_namespace(self.amqp, self.namespace)
        self.tokens.stop()


async def delete_namespace(url: str, namespace: str, extra_queues: Sequence[str] = ()) -> None:
    """Remove a run's exchange and queues from the shared RabbitMQ."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for service in SERVICES:
            queues = ServiceQueues(namespace, service, tuple(RETRY_DELAYS))
            names = [queues.queue, queues.dead_letter_queue]
            names += [queues.retry_queue(n) for n in range(1, len(RETRY_DELAYS) + 1)]
            for name in names:
                with contextlib.suppress(Exception):
                    await channel.queue_delete(name)
        for name in extra_queues:
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
        with contextlib.suppress(Exception):
            await channel.exchange_delete(f"{namespace}.events")


# -- services in subprocesses -----------------------------------------------------------------------


class ServiceProcess:
    """``python -m services serve <service>`` with the run's databases, broker namespace and JWKS."""

    def __init__(self, infra: Infra, service: str, database_url: str, **environment: str) -> None:
        self.service = service
        self.port = free_port()
        self.log_path = infra.workdir / f"{service}-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMI_")}
        env.update(
            {
                "IMI_ENVIRONMENT": "development",
                "IMI_DATA_DIR": str(infra.workdir / "data"),
                "IMI_BROKER_URL": infra.amqp,
                "IMI_BUS_NAMESPACE": infra.namespace,
                "IMI_BUS_RETRY_DELAYS": json.dumps(RETRY_DELAYS),
                f"IMI_{service.upper()}_DATABASE_URL": database_url,
                "IMI_HTTP_HOST": "127.0.0.1",
                "IMI_HTTP_PORT": str(self.port),
                "IMI_JWKS_URL": infra.tokens.jwks_url,
                "IMI_LOG_FORMAT": "json",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(environment)
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    # "ab" keeps the log of every start (a service restarted after a kill), "wb" the last one's.
    log_mode = "wb"

    def start(self) -> None:
        with self.log_path.open(self.log_mode) as log_file:  # the child holds its own descriptor
            self.process = subprocess.Popen(
                [PYTHON, "-m", "services", "serve", self.service],
                cwd=ROOT,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    async def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"{self.service} exited: see {self.log_path}\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"{self.url}/health/ready")
                    if response.status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.service} not ready in {timeout} s: see {self.log_path}\n{self.tail()}")
                await asyncio.sleep(0.2)

    def rss(self) -> float | None:
        return rss_mib(self.pid)

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def stop(self, timeout: float = 20) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def start_service(process: ServiceProcess, attempts: int = 4) -> None:
    """Start and wait until ready; started again (as an orchestrator would) when it exits during
    start-up, which it does when the shared broker goes away in the middle of its declarations."""
    for attempt in range(1, attempts + 1):
        process.start()
        try:
            await process.wait_ready()
            return
        except RuntimeError:
            if attempt == attempts or process.process is None or process.process.poll() is None:
                raise
            log(f"{process.service} exited during start-up; starting it again")
            await asyncio.sleep(3)


@asynccontextmanager
async def services_running(*processes: ServiceProcess) -> AsyncIterator[None]:
    try:
        await asyncio.gather(*(start_service(p) for p in processes))
        yield
    finally:
        await asyncio.gather(*(p.stop() for p in processes), return_exceptions=True)


RABBITMQ_LOG = Path("/var/log/rabbitmq")


def _broker_log_lines(marker: bytes) -> list[str]:
    from datetime import datetime

    found = []
    for path in sorted(RABBITMQ_LOG.glob("rabbit@*.log")):
        if "upgrade" in path.name:
            continue
        with contextlib.suppress(OSError, ValueError), path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 5_000_000))
            for raw in handle:
                if marker in raw:
                    found.append(datetime.fromisoformat(raw.split(b" [", 1)[0].decode()).isoformat())
    return found


def broker_quiet_for() -> float | None:
    """Seconds since the local RabbitMQ node last started, from its log (None without a log)."""
    from datetime import datetime

    starts = _broker_log_lines(b"Server startup complete")
    if not starts:
        return None
    return time.time() - datetime.fromisoformat(starts[-1]).timestamp()


def broker_restarts_since(started: float) -> list[str]:
    """When the local RabbitMQ node was stopped since ``started`` (epoch seconds), read from its log
    where this machine keeps one: other test runs stop and start it, which disturbs a benchmark."""
    from datetime import datetime

    found = []
    for path in sorted(RABBITMQ_LOG.glob("rabbit@*.log")):
        if "upgrade" in path.name:
            continue
        with contextlib.suppress(OSError, ValueError), path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 20_000_000))
            for raw in handle:
                if b"Stopping RabbitMQ applications" not in raw:
                    continue
                stamp = raw.split(b" [", 1)[0].decode()
                when = datetime.fromisoformat(stamp)
                if when.timestamp() >= started:
                    found.append(when.isoformat(timespec="seconds"))
    return found


async def migrate(service: str, url: str) -> None:
    from services import load_definition
    from shared.migrations import upgrade

    await upgrade(load_definition(service).migrations, url)


def default_port(service: str) -> int:
    return DEFAULT_PORTS[service]


# -- the SMTP server on loopback ---------------------------------------------------------------------


class SmtpSink:
    """An aiosmtpd Controller in a subprocess (``bench.smtp_sink``) that records the arrival time
    of every message in a JSON-lines file, so the processes measured never share its CPU time."""

    def __init__(self, infra: Infra) -> None:
        self.port = free_port()
        self.path = infra.workdir / f"smtp-{self.port}.jsonl"
        self.process: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self.arrivals: list[dict[str, Any]] = []

    def start(self) -> None:
        self.path.touch()
        self.process = subprocess.Popen(
            [PYTHON, "-m", "bench.smtp_sink", "--port", str(self.port), "--out", str(self.path)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    async def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                await reader.readline()
                writer.write(b"QUIT\r\n")
                await writer.drain()
                writer.close()
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the SMTP sink did not start")
            await asyncio.sleep(0.1)

    def read(self) -> list[dict[str, Any]]:
        """Every arrival so far (new lines are parsed once)."""
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        complete = data.rfind(b"\n") + 1
        self._offset += complete
        for line in data[:complete].splitlines():
            if line.strip():
                self.arrivals.append(json.loads(line))
        return self.arrivals

    async def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.read()) < count:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            if self.process.poll() is None:
                self.process.kill()
