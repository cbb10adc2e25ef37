"""Running services: all four in one process (``imi up``) or one alone (``imi serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import socket
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox

from services import create_app, load_definition
from shared.logging import get_logger
from shared.migrations import upgrade
from shared.settings import DEFAULT_PORTS, SERVICES, Settings

log = get_logger(__name__)


class PortInUse(Exception):
    """A port the launcher is to listen on is taken by another process."""


def check_ports_free(listeners: Mapping[str, tuple[str, int]]) -> None:
    """Refuse to start, naming the port, when another process listens where one of ``listeners``
    (what for: host and port) is to listen; otherwise a server would fail half-way through the
    start with a traceback."""
    for purpose, (host, port) in listeners.items():
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, protocol) as probe:
            # As uvicorn and aiosmtpd bind: a port in TIME_WAIT after a previous run is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                raise PortInUse(f"port {port} on {host} ({purpose}) is in use by another process") from exc


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the launcher, so several can share one process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def migrate(settings: Settings, services: Sequence[str] = SERVICES) -> None:
    for service in services:
        definition = load_definition(service)
        await upgrade(definition.migrations, settings.database_url(service))
        log.info("database migrated", service=service)


def start_smtp_sink(settings: Settings) -> Controller:
    """A local SMTP server that keeps every message in ``<data dir>/mail`` (a Maildir)."""
    maildir = (settings.data_dir / "mail").resolve()
    maildir.parent.mkdir(parents=True, exist_ok=True)
    controller = Controller(Mailbox(maildir), hostname=settings.smtp_host, port=settings.smtp_port)
    controller.start()
    return controller


def _wants_smtp_sink(settings: Settings) -> bool:
    return settings.is_development and settings.smtp_host in ("127.0.0.1", "localhost")


def server_config(service: str, settings: Settings, port: int) -> uvicorn.Config:
    """How uvicorn serves one service: behind the proxies of IMI_FORWARDED_ALLOW_IPS only, the
    client address is the one they forward."""
    return uvicorn.Config(
        create_app(service, settings),
        host=settings.http_host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        log_config=None,
        access_log=False,
        lifespan="on",
    )


async def run(services: Sequence[str], settings: Settings, *, run_migrations: bool, smtp_sink: bool) -> None:
    """Serve ``services`` until SIGINT or SIGTERM, then stop each one cleanly."""
    # IMI_HTTP_PORT is for one service alone (a container); together they take their own ports.
    ports = {service: settings.port(service) if len(services) == 1 else DEFAULT_PORTS[service] for service in services}
    # Building the apps runs each service's configuration checks: a bad setting is named first.
    servers = [(service, port, _Server(server_config(service, settings, port))) for service, port in ports.items()]
    listeners = {service: (settings.http_host, port) for service, port in ports.items()}
    sink_wanted = smtp_sink and _wants_smtp_sink(settings)
    if sink_wanted:
        listeners["the local SMTP sink"] = (settings.smtp_host, settings.smtp_port)
    check_ports_free(listeners)
    if run_migrations:
        await migrate(settings, services)
    sink = start_smtp_sink(settings) if sink_wanted else None

    loop = asyncio.get_running_loop()

    def shut_down() -> None:
        for _, _, server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(RuntimeError):  # not the main thread: the caller handles signals
            loop.add_signal_handler(sig, shut_down)

    for service, port, _ in servers:
        print(f"  {service:<10} http://{settings.http_host}:{port}  (docs: /docs, health: /health/ready)")
    if sink is not None:
        mail = Path(settings.data_dir, "mail")
        print(f"  smtp sink  smtp://{settings.smtp_host}:{settings.smtp_port}  (mail kept in {mail})")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        await asyncio.gather(*(server.serve() for _, _, server in servers))
    finally:
        if sink is not None:
            sink.stop()
