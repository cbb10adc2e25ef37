"""The ``imi`` command: run the system, migrate databases, inspect dead letters, write the event
catalogue, generate keys."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from services import load_definition
from shared.bus.bus import DeadLetterQueue
from shared.bus.topology import ServiceQueues
from shared.bus.transport import create_transport
from shared.logging import configure_logging
from shared.settings import SERVICES, Environment, Settings, UnsafeConfiguration

app = typer.Typer(help="Cross-border cooperation between public authorities.", no_args_is_help=True)
dlq = typer.Typer(help="Inspect and replay a service's dead-letter queue.", no_args_is_help=True)
events = typer.Typer(help="The event catalogue.", no_args_is_help=True)
keys = typer.Typer(help="Key material for production.", no_args_is_help=True)
registry = typer.Typer(help="The registry's ops commands.", no_args_is_help=True)
app.add_typer(dlq, name="dlq")
app.add_typer(registry, name="registry")
app.add_typer(events, name="events")
app.add_typer(keys, name="keys")

T = TypeVar("T")

ServiceArg = Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}")]


def _settings() -> Settings:
    try:
        settings = Settings()
    except (UnsafeConfiguration, ValidationError) as exc:
        typer.echo(f"error: invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _check_service(service: str) -> str:
    if service not in SERVICES:
        typer.echo(f"error: unknown service {service!r}; choose one of {', '.join(SERVICES)}", err=True)
        raise typer.Exit(2)
    return service


def _run(coroutine_factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coroutine_factory()

    try:
        return asyncio.run(main())
    except UnsafeConfiguration as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _serve(coroutine_factory: Callable[[], Awaitable[None]]) -> None:
    """Run servers; a port another process holds is a one-line refusal, not a traceback."""
    from services.launcher import PortInUse

    try:
        _run(coroutine_factory)
    except PortInUse as exc:
        typer.echo(
            f"error: {exc}: stop that process (another `imi up`?) or choose other ports "
            "(IMI_HTTP_PORT for `imi serve`, IMI_SMTP_PORT for the SMTP sink)",
            err=True,
        )
        raise typer.Exit(1) from exc


@app.command()
def up(
    data_dir: Annotated[Path | None, typer.Option(help="Where SQLite files, keys and mail are kept")] = None,
    smtp_sink: Annotated[bool, typer.Option(help="Run the local SMTP sink on IMI_SMTP_PORT")] = True,
) -> None:
    """Run all four services in this process: SQLite files, the memory broker and a local SMTP sink
    by default; PostgreSQL and RabbitMQ when their URLs are set."""
    from services.launcher import run

    settings = _settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    broker = settings.broker_url.split("@")[-1]
    typer.echo(f"Starting the IMI platform (data in {settings.data_dir.resolve()}, broker {broker})")
    _serve(lambda: run(SERVICES, settings, run_migrations=True, smtp_sink=smtp_sink))


@app.command()
def serve(
    service: ServiceArg,
    migrate: Annotated[bool, typer.Option(help="Run the service's migrations first")] = False,
) -> None:
    """Run one service (what a container runs)."""
    from services.launcher import run

    _check_service(service)
    settings = _settings()
    _serve(lambda: run([service], settings, run_migrations=migrate, smtp_sink=False))


@app.command()
def migrate(service: Annotated[str | None, typer.Argument(help="Only this service")] = None) -> None:
    """Bring each service's database to its latest schema."""
    from services.launcher import migrate as run_migrations

    targets = [_check_service(service)] if service else list(SERVICES)
    settings = _settings()
    _run(lambda: run_migrations(settings, targets))
    typer.echo(f"migrated: {', '.join(targets)}")


async def _dead_letter_queue(settings: Settings, service: str) -> DeadLetterQueue:
    if settings.broker_url.startswith("memory://"):
        typer.echo(
            "error: the embedded memory broker lives inside the `imi up` process; "
            "set IMI_BROKER_URL to RabbitMQ (amqp://…) to inspect dead letters from outside.",
            err=True,
        )
        raise typer.Exit(2)
    transport = create_transport(settings.broker_url)
    await transport.start()
    if not await transport.wait_connected(10):
        await transport.stop()
        typer.echo(f"error: cannot reach the broker at {settings.broker_url.split('@')[-1]}", err=True)
        raise typer.Exit(1)
    queues = ServiceQueues(settings.bus_namespace, service, tuple(settings.bus_retry_delays))
    return DeadLetterQueue(transport, queues)


@dlq.command("list")
def dlq_list(
    service: ServiceArg,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """Show the messages in a service's dead-letter queue, leaving them there."""
    _check_service(service)
    settings = _settings()

    async def main() -> None:
        queue = await _dead_letter_queue(settings, service)
        try:
            letters = await queue.list(limit)
        finally:
            await queue.transport.stop()
        for letter in letters:
            if as_json:
                typer.echo(
                    json.dumps(
                        {
                            "message_id": letter.message_id,
                            "event_type": letter.event_type,
                            "attempts": letter.attempts,
                            "failed_at": letter.failed_at,
                            "error": letter.error,
                        }
                    )
                )
            else:
                typer.echo(
                    f"{letter.message_id}  {letter.event_type}  attempts={letter.attempts}  "
                    f"failed_at={letter.failed_at}  error={letter.error}"
                )
        if not as_json:
            typer.echo(f"{len(letters)} dead-lettered message(s) in {queue.queues.dead_letter_queue}")

    _run(main)


@dlq.command("replay")
def dlq_replay(
    service: ServiceArg,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many")] = None,
) -> None:
    """Send dead-lettered messages back to the service's queue for a fresh set of attempts."""
    _check_service(service)
    settings = _settings()

    async def main() -> int:
        queue = await _dead_letter_queue(settings, service)
        try:
            return await queue.replay(limit)
        finally:
            await queue.transport.stop()

    count = _run(main)
    typer.echo(f"replayed {count} message(s) into {settings.bus_namespace}.{service}")


@events.command("catalogue")
def events_catalogue(
    output: Annotated[Path, typer.Option(help="Where the AsyncAPI document goes")] = Path("docs/events/asyncapi.yaml"),
    check: Annotated[bool, typer.Option(help="Fail if the file is not up to date instead of writing it")] = False,
) -> None:
    """Write the AsyncAPI document generated from the event contracts."""
    from shared.events.catalogue import render_catalogue

    rendered = render_catalogue({name: load_definition(name).handlers.event_types for name in SERVICES})
    if check:
        if not output.exists() or output.read_text() != rendered:
            typer.echo(f"{output} is stale: run `imi events catalogue`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{output} is up to date")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(rendered)
    typer.echo(f"wrote {output}")


@app.command("openapi")
def openapi_documents(
    output: Annotated[Path, typer.Option(help="Folder for <service>.openapi.json")] = Path("docs/api"),
    check: Annotated[bool, typer.Option(help="Fail if a file is not up to date instead of writing it")] = False,
) -> None:
    """Write each service's OpenAPI document (routes, schemas, error bodies) for front-end teams."""
    from services import create_app

    stale = []
    for service in SERVICES:
        document = create_app(service, Settings(environment=Environment.development)).openapi()
        rendered = json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        target = output / f"{service}.openapi.json"
        if check:
            if not target.exists() or target.read_text() != rendered:
                stale.append(str(target))
            continue
        output.mkdir(parents=True, exist_ok=True)
        target.write_text(rendered)
        typer.echo(f"wrote {target}")
    if stale:
        typer.echo(f"stale: {', '.join(stale)}: run `imi openapi`", err=True)
        raise typer.Exit(1)


@keys.command("generate")
def keys_generate() -> None:
    """Print a fresh signing key and sealing key pair as environment variables (keep them secret)."""
    from shared.keys import generate_keys

    for name, pem in generate_keys().items():
        escaped = pem.strip().replace("\n", "\\n")
        typer.echo(f'{name}="{escaped}"')


@registry.command("bootstrap")
def registry_bootstrap(
    commission_email: Annotated[str, typer.Option(help="E-mail of the Commission's helpdesk and its first user")],
    coordinator: Annotated[
        list[str],
        typer.Option(
            "--coordinator",
            "--country",
            help="COUNTRY=EMAIL[=OFFICIAL NAME] of a national coordinator and its first user; repeatable",
        ),
    ],
) -> None:
    """Create the Commission's helpdesk authority and national coordinators with their first users
    (rules A2, A3, S9). Prints the user names to hand over in person; temporary passwords go out by
    e-mail once the registry runs (rule S11). Running it again creates only what is missing."""
    from services.registry.bootstrap import CoordinatorSpec, bootstrap_database
    from shared.errors import ApiError

    specs = []
    for item in coordinator:
        parts = item.split("=", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            typer.echo(
                f"error: --coordinator (or --country) {item!r} is not COUNTRY=EMAIL[=OFFICIAL NAME]", err=True
            )
            raise typer.Exit(2)
        specs.append(CoordinatorSpec(parts[0].upper(), parts[1], parts[2] if len(parts) == 3 else None))
    settings = _settings()

    async def main() -> list[Any]:
        return list(await bootstrap_database(settings, commission_email=commission_email, coordinators=specs))

    try:
        created = _run(main)
    except ApiError as exc:
        typer.echo(f"error: {exc.code}: {exc.message} ({exc.field})", err=True)
        raise typer.Exit(2) from exc
    for entry in created:
        typer.echo(f"{entry.country}  {entry.authority}  user name: {entry.username}")
    if not created:
        typer.echo("nothing to create: the helpdesk and these coordinators exist")


@app.command()
def demo(
    data_dir: Annotated[
        Path | None, typer.Option(help="The data directory `imi up` runs on (the same --data-dir, if you gave it one)")
    ] = None,
    registry_url: Annotated[str, typer.Option(help="The running registry")] = "http://127.0.0.1:8001",
    exchange_url: Annotated[str, typer.Option(help="The running exchange")] = "http://127.0.0.1:8002",
    notifier_url: Annotated[str, typer.Option(help="The running notifier")] = "http://127.0.0.1:8003",
    retention_url: Annotated[str, typer.Option(help="The running retention service")] = "http://127.0.0.1:8004",
    purge: Annotated[bool, typer.Option(help="Finish by moving the clocks six months and a day forward")] = True,
) -> None:
    """Against a running `imi up`: walk the guide from the coordinators' bootstrap to a closed
    request, printing each step and the e-mails the local SMTP sink receives as they arrive; then
    six months later, the personal data's purge. The data stay in place for exploring the APIs."""
    import httpx

    from services.journey import Endpoints, Journey, JourneyError, Maildir, MailFeed, uses_the_keys_of
    from services.registry.bootstrap import CoordinatorSpec, bootstrap_database

    settings = _settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    endpoints = Endpoints(registry_url, exchange_url, notifier_url, retention_url)
    for url in (registry_url, exchange_url, notifier_url, retention_url):
        try:
            ready = httpx.get(f"{url}/health/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            ready = False
        if not ready:
            typer.echo(f"error: nothing ready at {url}: start the system with `imi up` first", err=True)
            raise typer.Exit(1)
    where = settings.data_dir.resolve()
    if not uses_the_keys_of(settings, httpx.get(f"{registry_url}/.well-known/jwks.json", timeout=5).json()):
        typer.echo(
            f"error: the running system does not use the data in {where}: give `imi demo --data-dir` the "
            'directory `imi up` printed at its start ("data in …")',
            err=True,
        )
        raise typer.Exit(2)
    maildir = Maildir(where / "mail")
    if not maildir.path.is_dir():
        typer.echo(
            f"error: no SMTP sink's mail in {maildir.path}: the demo reads the e-mails that `imi up` keeps there "
            "(run it without --no-smtp-sink)",
            err=True,
        )
        raise typer.Exit(2)

    async def bootstrap(coordinators: list[tuple[str, str]], commission_email: str) -> dict[str, str]:
        specs = [CoordinatorSpec(country, email) for country, email in coordinators]
        created = await bootstrap_database(settings, commission_email=commission_email, coordinators=specs)
        return {entry.country: entry.username for entry in created}

    async def main() -> None:
        started = time.monotonic()
        typer.echo(f"The guide, end to end, on the system at {registry_url} … (e-mails from {maildir.path}: ✉)\n")
        feed = MailFeed(maildir, typer.echo)
        following = asyncio.create_task(feed.follow())

        def say(line: str) -> None:
            feed.flush()  # what arrived before a step is shown before it
            typer.echo(line)

        try:
            journey = Journey(endpoints, maildir, bootstrap, say=say)
            result = await journey.run_all()
            if purge:
                await journey.six_months_later(result.request_id)
            await asyncio.sleep(1)  # the last step's e-mails, sent a moment after it
        finally:
            following.cancel()
        feed.flush()
        typer.echo("\nThe demo's accounts, to explore with (user name, password, security code):")
        for account in result.accounts.values():
            typer.echo(f"  {account.name:<16} {account.username:<34} {account.password:<24} {account.security_code}")
        typer.echo(
            f"\nDone in {time.monotonic() - started:.0f} s; the sink kept {feed.shown} e-mails in {maildir.path} (a "
            f"Maildir). Request {result.reference} is in place to explore: log in with POST {registry_url}/auth/login "
            f"{{username, password}}, then POST {registry_url}/auth/login/code {{challenge_id, digits}} with the "
            f"security code's digits at the positions it asks, and send the access token as a Bearer token; "
            f"try {exchange_url}/docs and {registry_url}/docs (docs/guide.md follows the same calls)."
        )

    try:
        _run(main)
    except JourneyError as exc:
        typer.echo(f"error: the demo stopped: {exc}", err=True)
        raise typer.Exit(1) from exc
