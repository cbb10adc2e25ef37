"""Publishing the registry's state: every change to an authority or user bumps its version, is
recorded in the audit trail and goes out as an event carrying the full current state (never a
diff, never a credential, never the user name: rule S11), in the same transaction as the change.
The snapshot republish (handlers.py) sends the same state built by the same functions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from services.registry.models import AuditEntry, Authority, User
from shared.auth import Principal
from shared.contracts.registry import (
    AreaGrant,
    AuthorityState,
    CoordinatorAreaSettings,
    LinkDetail,
    RequestCoordinatorState,
    RoleState,
    Translation,
    UserState,
)
from shared.events.envelope import Contract
from shared.outbox import UnitOfWork

# Called with every authority change inside its transaction (the directory keeps its index here).
AuthorityListener = Callable[[UnitOfWork, Authority], Awaitable[None]]
authority_listeners: list[AuthorityListener] = []


def authority_state(authority: Authority) -> AuthorityState:
    keywords: dict[str, list[str]] = {}
    for keyword in authority.keywords:
        keywords.setdefault(keyword.list_name, []).append(keyword.code)
    return AuthorityState(
        id=authority.id,
        version=authority.version,
        kind=authority.kind,
        country=authority.country,
        level=authority.level,
        region=authority.region,
        official_name=authority.official_name,
        language=authority.language,
        informal_name=authority.informal_name,
        profile=authority.profile,
        address=authority.address,
        phone=authority.phone,
        website=authority.website,
        translations=[
            Translation(
                language=t.language,
                informal_name=t.informal_name,
                profile=t.profile,
                status=t.status,
                translated_at=t.translated_at,
                translated_by=t.translated_by,
            )
            for t in sorted(authority.translations, key=lambda t: t.language)
        ],
        status=authority.status,
        emails=sorted(e.email for e in authority.emails),
        languages=sorted(lang.language for lang in authority.languages),
        areas=sorted(a.area for a in authority.areas),
        area_grants=[
            AreaGrant(area=a.area, granted_by=a.granted_by_id, granted_at=a.granted_at)
            for a in sorted(authority.areas, key=lambda a: a.area)
        ],
        keywords={name: sorted(codes) for name, codes in sorted(keywords.items())},
        allocation_enabled=authority.allocation_enabled,
        links=sorted((link.linked_authority_id for link in authority.links), key=str),
        link_details=[
            LinkDetail(linked_authority_id=link.linked_authority_id, created_at=link.created_at)
            for link in sorted(authority.links, key=lambda link: str(link.linked_authority_id))
        ],
        request_coordinators=[
            RequestCoordinatorState(area=rc.area, coordinator_id=rc.coordinator_id, full_view=rc.full_view)
            for rc in sorted(authority.request_coordinators, key=lambda rc: (rc.area, str(rc.coordinator_id)))
        ],
        coordinator_settings=[
            CoordinatorAreaSettings(
                area=s.area,
                referral=s.referral,
                approve_requests=s.approve_requests,
                approve_replies=s.approve_replies,
            )
            for s in sorted(authority.coordinator_settings, key=lambda s: s.area)
        ],
        coordinator_area=authority.coordinator_area,
        registered_by=authority.registered_by_id,
        validated_by=authority.validated_by_id,
        created_at=authority.created_at,
        updated_at=authority.updated_at,
    )


def user_state(user: User) -> UserState:
    return UserState(
        id=user.id,
        version=user.version,
        authority_id=user.authority_id,
        name=user.name,
        email=user.email,
        phone=user.phone,
        language=user.language,
        status=user.status,
        digest=user.digest,
        roles=[RoleState(role=r.role, area=r.area) for r in sorted(user.roles, key=lambda r: (r.area or "", r.role))],
        created_at=user.created_at,
        updated_at=user.updated_at,
    )


async def audit(
    uow: UnitOfWork,
    actor: Principal | None,
    entity_type: str,
    entity_id: object,
    action: str,
    changes: dict[str, Any] | None = None,
) -> None:
    uow.session.add(
        AuditEntry(
            at=uow.clock.now(),
            actor_user_id=actor.user_id if actor else None,
            actor_authority_id=actor.authority_id if actor else None,
            entity_type=entity_type,
            entity_id=str(entity_id),
            action=action,
            changes=changes or {},
        )
    )


async def authority_changed(
    uow: UnitOfWork,
    authority: Authority,
    contract: Contract[AuthorityState],
    *,
    actor: Principal | None,
    action: str,
    changes: dict[str, Any] | None = None,
    new: bool = False,
) -> None:
    """Record and announce a change to ``authority`` (already modified in the session)."""
    now = uow.clock.now()
    if not new:
        authority.version += 1
    authority.updated_at = now
    await uow.session.flush()
    await refresh_collections(uow, authority)
    await audit(uow, actor, "authority", authority.id, action, changes)
    for listener in authority_listeners:
        await listener(uow, authority)
    await uow.emit(contract, authority_state(authority))


async def user_changed(
    uow: UnitOfWork,
    user: User,
    contract: Contract[UserState],
    *,
    actor: Principal | None,
    action: str,
    changes: dict[str, Any] | None = None,
    new: bool = False,
) -> None:
    """Record and announce a change to ``user`` (already modified in the session)."""
    if not new:
        user.version += 1
    user.updated_at = uow.clock.now()
    await uow.session.flush()
    await uow.session.refresh(user, ["roles"])
    await audit(uow, actor, "user", user.id, action, changes)
    await uow.emit(contract, user_state(user))


async def refresh_collections(uow: UnitOfWork, authority: Authority) -> None:
    await uow.session.refresh(
        authority,
        [
            "translations",
            "emails",
            "languages",
            "keywords",
            "areas",
            "links",
            "request_coordinators",
            "coordinator_settings",
        ],
    )


async def all_authorities(uow: UnitOfWork) -> list[Authority]:
    return list((await uow.session.scalars(select(Authority).order_by(Authority.created_at))).all())


async def all_users(uow: UnitOfWork) -> list[User]:
    return list((await uow.session.scalars(select(User).order_by(User.created_at))).all())
