"""Starting a new installation: the Commission's helpdesk authority (rule A3) and one national
coordinator per country (rule A2), each with a first user who has every right (rule S9)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from services.registry import reference
from services.registry.authorities import create_authority
from services.registry.models import Authority, AuthorityKind, AuthorityStatus, Level, User
from services.registry.schemas import AuthorityIn, UserIn
from services.registry.validation import check_country
from shared.outbox import UnitOfWork
from shared.settings import Settings

HELPDESK_NAME = "European Commission – IMI helpdesk"


@dataclass(frozen=True)
class CoordinatorSpec:
    country: str
    email: str
    official_name: str | None = None


@dataclass(frozen=True)
class Created:
    country: str
    authority: str
    username: str


async def _first_user(uow: UnitOfWork, authority: Authority) -> User:
    user = await uow.session.scalar(select(User).where(User.authority_id == authority.id).order_by(User.created_at))
    assert user is not None
    return user


async def bootstrap(
    uow: UnitOfWork, settings: Settings, *, commission_email: str, coordinators: list[CoordinatorSpec]
) -> list[Created]:
    """Create what is missing; running it again changes nothing. Answers the user names, which the
    operator hands over in person (rule S11); temporary passwords go out by e-mail."""
    areas = [a.code for a in reference.legislative_areas()]
    created: list[Created] = []
    commission = await uow.session.scalar(select(Authority).where(Authority.kind == AuthorityKind.commission))
    if commission is None:
        commission, user = await create_authority(
            uow,
            settings,
            AuthorityIn(
                kind=AuthorityKind.commission,
                country="BE",
                level=Level.national,
                official_name=HELPDESK_NAME,
                language="en",
                informal_name="IMI helpdesk of the European Commission",
                profile="Hosts the system, provides the translations and runs the central helpdesk.",
                emails=[commission_email],
                languages=["en", "fr", "de"],
                areas=areas,
                first_user=UserIn(name="IMI helpdesk", email=commission_email, language="en"),
            ),
            actor=None,
            registered_by=None,
            status=AuthorityStatus.active,
        )
        created.append(Created("EU", commission.official_name, user.username))
    for spec in coordinators:
        check_country(spec.country)
        exists = await uow.session.scalar(
            select(Authority).where(
                Authority.country == spec.country, Authority.kind == AuthorityKind.national_coordinator
            )
        )
        if exists is not None:
            continue
        country = next(c for c in reference.countries() if c.code == spec.country)
        language = country.languages[0]
        name = spec.official_name or f"National IMI coordinator – {country.name_in(language)}"
        authority, user = await create_authority(
            uow,
            settings,
            AuthorityIn(
                kind=AuthorityKind.national_coordinator,
                country=spec.country,
                level=Level.national,
                official_name=name,
                language=language,
                informal_name=f"National IMI coordinator of {country.name_in('en')}",
                emails=[spec.email],
                languages=list(dict.fromkeys([language, "en"])),
                areas=areas,
                first_user=UserIn(name=f"National coordinator {spec.country}", email=spec.email, language=language),
            ),
            actor=None,
            registered_by=commission,
            status=AuthorityStatus.active,
        )
        created.append(Created(spec.country, authority.official_name, user.username))
    return created


async def bootstrap_database(
    settings: Settings, *, commission_email: str, coordinators: list[CoordinatorSpec]
) -> list[Created]:
    """:func:`bootstrap` on the registry's database, migrated first. The events wait in the outbox
    until the running registry's relay publishes them (no broker connection is needed here)."""
    from services.registry.app import definition
    from services.registry.models import messaging
    from shared.clock import SystemClock
    from shared.database import create_engine, create_session_factory
    from shared.migrations import upgrade
    from shared.outbox import Messaging

    url = settings.database_url("registry")
    await upgrade(definition.migrations, url)
    engine = create_engine(url)
    try:
        registry = Messaging("registry", create_session_factory(engine), messaging, SystemClock())
        async with registry.transaction() as uow:
            return await bootstrap(uow, settings, commission_email=commission_email, coordinators=coordinators)
    finally:
        await engine.dispose()
