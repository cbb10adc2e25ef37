"""Running services: all four in one process (``imi up``) or one alone (``imi serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox

from services import create_app, load_definition
from shared.logging import get_logger
from shared.migrations import upgrade
from shared.settings import DEFAULT_PORTS, SERVICES, Settings

log = get_logger(__name__)


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
    if run_migrations:
        await migrate(settings, services)
    sink = start_smtp_sink(settings) if smtp_sink and _wants_smtp_sink(settings) else None
    servers = []
    for service in services:
        # IMI_HTTP_PORT is for one service alone (a container); together they take their own ports.
        port = settings.port(service) if len(services) == 1 else DEFAULT_PORTS[service]
        servers.append((service, port, _Server(server_config(service, settings, port))))

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
