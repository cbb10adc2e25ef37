"""A notifier with a small world in its read model and a real SMTP server beside it.

The registry's and the exchange's side arrive as real events through the notifier's own consumer
code (inbox and handlers). Mail goes over SMTP to an aiosmtpd server on 127.0.0.1 that records
every message as received (and answers 550 for the addresses it is told to refuse). The sender's
pass is called directly; the background tasks run only where a test starts the service."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import EmailMessage
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from sqlalchemy import select

from services import create_app, load_definition
from services.notifier.models import Delivery
from services.notifier.sender import PassResult, send_due
from services.notifier.settings import NotifierSettings
from services.notifier.state import configure, notifier
from shared.auth import InvalidToken, Principal
from shared.bus.memory import MemoryBroker, MemoryTransport
from shared.clock import FrozenClock
from shared.contracts.exchange import RequestChange
from shared.contracts.registry import (
    AUTHORITY_UPDATED,
    USER_UPDATED,
    AuthorityState,
    CoordinatorAreaSettings,
    RequestCoordinatorState,
    RoleState,
    Translation,
    UserState,
)
from shared.events.envelope import Contract, Envelope, EventData
from shared.migrations import upgrade
from shared.service import ServiceRuntime
from shared.settings import Settings

PQ = "professional_qualifications"
SERVICES = "services"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PUBLIC_URL = "https://imi.example.eu"
LANGUAGE_OF = {"RO": "ro", "FI": "fi", "IE": "en", "DE": "de"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    peer: Any

    @property
    def message(self) -> EmailMessage:
        return parse_strictly(self.content)


def parse_strictly(raw: bytes) -> EmailMessage:
    """The message as Python's email package reads it with ``policy.strict`` (RFC 5322, RFC 2045–2047):
    a defect in the structure or a body raises; a header's defects, which the package records on the
    header instead of raising, fail the assertion."""
    parsed = email.message_from_bytes(raw, policy=email.policy.strict)
    assert isinstance(parsed, EmailMessage)
    for part in parsed.walk():
        assert part.defects == [], part.defects
        for name, value in part.items():
            assert value.defects == (), f"{name}: {value.defects}"
        if not part.is_multipart():
            part.get_content()  # decodes the body: a transfer-encoding defect raises
    return parsed


class Recorder:
    """An aiosmtpd handler keeping every message; recipients in ``refuse`` get a 550, in ``defer`` a 450."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.refuse: set[str] = set()
        self.defer: set[str] = set()  # answered 450: try again later

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address.lower() in self.refuse:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        if address.lower() in self.defer:
            return f"450 4.2.1 <{address}>: mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session.peer))
        return "250 Message accepted for delivery"


class SmtpServer:
    """A real SMTP server on 127.0.0.1 that can be stopped and started again on the same port."""

    def __init__(self, recorder: Recorder | None = None, **controller_options: Any) -> None:
        """``controller_options`` go to aiosmtpd (TLS contexts, STARTTLS, an authenticator)."""
        self.port = free_port()
        self.recorder = recorder or Recorder()
        self.controller_options = controller_options
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port, **self.controller_options)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    async def stopped(self) -> None:
        """Stop the server (its open connections drop) from a test's event loop."""
        await asyncio.to_thread(self.stop)

    async def started(self) -> None:
        await asyncio.to_thread(self.start)

    @property
    def received(self) -> list[Received]:
        return self.recorder.received

    def messages_to(self, address: str) -> list[EmailMessage]:
        return [r.message for r in self.received if address in r.rcpt_tos]


def body(message: EmailMessage, subtype: str) -> str:
    """A part's text as written (lines end in CRLF on the wire, rule of RFC 5322)."""
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    content: str = part.get_content()
    return content.replace("\r\n", "\n")


class Tokens:
    """Bearer token -> principal, as the registry would have signed it."""

    def __init__(self) -> None:
        self.principals: dict[str, Principal] = {}

    async def verify(self, token: str) -> Principal:
        if token not in self.principals:
            raise InvalidToken("unknown test token")
        return self.principals[token]

    def add(self, token: str, *, authority_roles: list[str] | None = None, roles: list[str] | None = None) -> None:
        self.principals[token] = Principal.model_validate(
            {
                "sub": str(uuid.uuid4()),
                "authority": str(uuid.uuid4()),
                "country": "BE",
                "roles": {PQ: roles or []},
                "authority_roles": authority_roles or [],
            }
        )


@dataclass
class NotifierWorld:
    app: Any
    settings: Settings
    clock: FrozenClock
    tokens: Tokens
    smtp: SmtpServer
    authorities: dict[str, uuid.UUID] = field(default_factory=dict)
    authority_state: dict[str, AuthorityState] = field(default_factory=dict)
    users: dict[str, uuid.UUID] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    requests: dict[str, uuid.UUID] = field(default_factory=dict)
    versions: dict[uuid.UUID, int] = field(default_factory=dict)

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime

    def envelope(self, contract: Contract[Any], data: EventData) -> Envelope:
        return Envelope(
            type=contract.name,
            occurred_at=self.clock.now(),
            producer=contract.producer,
            correlation_id="test",
            data=data.model_dump(mode="json"),
        )

    async def process(self, envelope: Envelope) -> bool:
        return await self.runtime.messaging.process(envelope, self.runtime.definition.handlers)

    async def deliver(self, contract: Contract[Any], data: EventData) -> Envelope:
        envelope = self.envelope(contract, data)
        await self.process(envelope)
        return envelope

    def _version(self, entity: uuid.UUID) -> int:
        self.versions[entity] = self.versions.get(entity, 0) + 1
        return self.versions[entity]

    def authority(
        self,
        name: str,
        country: str,
        *,
        kind: str = "competent_authority",
        coordinators: tuple[str, ...] = (),
        allocation: bool = False,
        referral: str = "yes",
        emails: list[str] | None = None,
        status: str = "active",
        areas: tuple[str, ...] = (PQ,),
        registered_by: str | None = None,
        translations: dict[str, str] | None = None,
    ) -> AuthorityState:
        authority_id = self.authorities.setdefault(name, uuid.uuid4())
        state = AuthorityState(
            id=authority_id,
            version=self._version(authority_id),
            kind=kind,
            country=country,
            level="national",
            region=None,
            official_name=f"{name} official",
            language=LANGUAGE_OF[country],
            informal_name=name.replace("_", " ").title(),
            profile="",
            translations=[
                Translation(language=language, informal_name=text, profile="", status="current")
                for language, text in (translations or {}).items()
            ],
            status=status,
            emails=[f"{name}@authorities.example.org"] if emails is None else emails,
            languages=[],
            areas=list(areas),
            keywords={},
            allocation_enabled=allocation,
            links=[],
            request_coordinators=[
                RequestCoordinatorState(area=area, coordinator_id=self.authorities[c], full_view=False)
                for c in coordinators
                for area in areas
            ],
            coordinator_settings=[
                CoordinatorAreaSettings(area=area, referral=referral, approve_requests=False, approve_replies=False)
                for area in areas
            ]
            if kind != "competent_authority"
            else [],
            registered_by=self.authorities[registered_by] if registered_by else None,
            updated_at=self.clock.now(),
        )
        self.authority_state[name] = state
        return state

    async def add_authority(self, name: str, country: str, **options: Any) -> AuthorityState:
        state = self.authority(name, country, **options)
        await self.deliver(AUTHORITY_UPDATED, state)
        return state

    def user(
        self,
        name: str,
        authority: str,
        roles: list[str],
        language: str,
        *,
        digest: bool = False,
        status: str = "active",
        area: str | None = PQ,
        full_name: str | None = None,
    ) -> UserState:
        user_id = self.users.setdefault(name, uuid.uuid4())
        self.emails[name] = f"{name}@users.example.org"
        return UserState(
            id=user_id,
            version=self._version(user_id),
            authority_id=self.authorities[authority],
            name=full_name or f"Name of {name}",
            email=self.emails[name],
            language=language,
            status=status,
            digest=digest,
            roles=[RoleState(role=role, area=None if role == "local_data_administrator" else area) for role in roles],
            updated_at=self.clock.now(),
        )

    async def add_user(self, name: str, authority: str, roles: list[str], language: str, **options: Any) -> UserState:
        state = self.user(name, authority, roles, language, **options)
        await self.deliver(USER_UPDATED, state)
        return state

    def change(
        self,
        request: str = "r1",
        *,
        requesting: str = "fi_board",
        responding: str | None = "ro_college",
        requester: str = "fi_handler",
        allocated: str | None = None,
        previously_allocated: str | None = None,
        forwarded_to: str | None = None,
        forwarded_as: str | None = None,  # the reference of the request some questions now form
        state: str = "awaiting_acceptance",
        previous: str | None = None,
        actor: str | None = None,
        approving: str | None = None,
        referred: tuple[str, ...] = (),
        reply_date: date | None = date(2026, 4, 1),
    ) -> RequestChange:
        request_id = self.requests.setdefault(request, uuid.uuid4())
        return RequestChange(
            request_id=request_id,
            reference=f"REQ-2026-{len(self.requests):06d}",
            area=PQ,
            state=state,
            previous_state=previous,
            requesting_authority_id=self.authorities[requesting],
            responding_authority_id=self.authorities[responding] if responding else None,
            requester_user_id=self.users[requester],
            allocated_user_id=self.users[allocated] if allocated else None,
            previously_allocated_user_id=self.users[previously_allocated] if previously_allocated else None,
            forwarded_to_authority_id=self.authorities[forwarded_to] if forwarded_to else None,
            forwarded_as_request_id=uuid.uuid4() if forwarded_as else None,
            forwarded_as_reference=forwarded_as,
            reply_date=reply_date,
            approving_coordinator_id=self.authorities[approving] if approving else None,
            referral_coordinator_ids=[self.authorities[c] for c in referred],
            actor_user_id=None,
            actor_authority_id=self.authorities[actor] if actor else None,
            occurred_at=self.clock.now(),
            version=1,
        )

    async def send(self) -> PassResult:
        """One pass of the sender, as the background task runs it."""
        return await send_due(self.runtime)

    async def send_all(self) -> int:
        sent = 0
        while (result := await self.send()).claimed:
            sent += result.sent
        return sent

    async def deliveries(self, **where: Any) -> list[Delivery]:
        async with self.runtime.sessions() as session:
            query = select(Delivery).order_by(Delivery.id)
            for name, value in where.items():
                query = query.where(getattr(Delivery, name) == value)
            return list((await session.scalars(query)).all())

    async def mail(self) -> list[Delivery]:
        """The deliveries that are e-mails (not the skipped recipients)."""
        return [d for d in await self.deliveries() if d.status != "skipped"]

    def recipients(self) -> set[str]:
        return {address for received in self.smtp.received for address in received.rcpt_tos}

    def address(self, name: str) -> str:
        if name in self.emails:
            return self.emails[name]
        return f"{name}@authorities.example.org"


def notifier_settings(**overrides: Any) -> NotifierSettings:
    values: dict[str, Any] = {"send_rate": 1000.0, "retry_initial": 60.0, "retry_max": 3600.0, "digest_hour": 17}
    values.update(overrides)
    return NotifierSettings(**values)


def world_settings(tmp_path: Any, smtp: SmtpServer, database_url: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "notifier_database_url": database_url or f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "smtp_from": "IMI <no-reply@imi.example.eu>",
        "public_url": PUBLIC_URL,
        "outbox_poll_interval": 0.1,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def notifier_world(
    tmp_path: Any,
    smtp: SmtpServer,
    *,
    database_url: str | None = None,
    populate_world: bool = True,
    settings_overrides: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[NotifierWorld]:
    """``settings_overrides``: shared settings (IMI_…, e.g. SMTP security); ``options``: the notifier's."""
    settings = world_settings(tmp_path, smtp, database_url, **(settings_overrides or {}))
    await upgrade(load_definition("notifier").migrations, settings.database_url("notifier"))
    clock = FrozenClock(START)
    tokens = Tokens()
    app = create_app("notifier", settings, clock=clock, transport=MemoryTransport(MemoryBroker()), verifier=tokens)
    world = NotifierWorld(app, settings, clock, tokens, smtp)
    configure(world.runtime, notifier_settings(**options))
    try:
        if populate_world:
            await populate(world)
        yield world
    finally:
        await notifier(world.runtime).mailer.close()
        await world.runtime.engine.dispose()


@asynccontextmanager
async def api_client(world: NotifierWorld) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=world.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://notifier") as client:
        yield client


async def populate(world: NotifierWorld, *, allocation: bool = False) -> None:
    """A Finnish board asks a Romanian college; their coordinators; users in several languages."""
    await world.add_authority("ro_coordinator", "RO", kind="national_coordinator")
    await world.add_authority("fi_coordinator", "FI", kind="national_coordinator", referral="delegated")
    await world.add_authority("ro_college", "RO", coordinators=("ro_coordinator",), allocation=allocation)
    await world.add_authority("ro_other", "RO", coordinators=("ro_coordinator",))
    await world.add_authority("fi_board", "FI", coordinators=("fi_coordinator",))
    await world.add_user("fi_handler", "fi_board", ["request_handler"], "fi")
    await world.add_user("fi_handler2", "fi_board", ["request_handler"], "fi")
    await world.add_user("ro_handler", "ro_college", ["request_handler"], "ro")
    await world.add_user("ro_handler_de", "ro_college", ["request_handler"], "de")
    await world.add_user("ro_allocator", "ro_college", ["allocator"], "ro")
    await world.add_user("ro_basic", "ro_college", [], "ro")
    await world.add_user("ro_services_handler", "ro_college", ["request_handler"], "ro", area=SERVICES)
    await world.add_user("ro_gone", "ro_college", ["request_handler"], "ro", status="deactivated")
    await world.add_user("ro_lda", "ro_college", ["local_data_administrator"], "ro")
    await world.add_user("ro_other_handler", "ro_other", ["request_handler"], "ro")
    await world.add_user("ro_coord_handler", "ro_coordinator", ["request_handler"], "ro")
    await world.add_user("ro_coord_admin", "ro_coordinator", ["data_administrator"], "en")
    await world.add_user("ro_coord_basic", "ro_coordinator", [], "ro")
    await world.add_user("fi_coord_handler", "fi_coordinator", ["request_handler", "data_administrator"], "fi")
    await world.add_user("fi_referral_user", "fi_coordinator", ["referral_user"], "sv")
