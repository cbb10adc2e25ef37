"""The notifier's copy of the registry data it needs to address alerts (ARCHITECTURE.md, Read
models): authorities with their addresses, language, country, informal names, allocation setting,
request coordinators and coordinator settings; users with their address, language, status, digest
choice and roles. Built from the registry's full-state events; an older version never overwrites a
newer one. No user name is kept (rule S11)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select

from services.notifier.models import KnownAuthority, KnownUser
from shared.contracts.exchange import SnapshotRequest
from shared.contracts.notifier import REGISTRY_SNAPSHOT_REQUESTED
from shared.contracts.registry import AuthorityState, UserState
from shared.outbox import UnitOfWork
from shared.service import ServiceRuntime

DEACTIVATED = "deactivated"


async def upsert_authority(uow: UnitOfWork, state: AuthorityState) -> KnownAuthority:
    known = await uow.session.get(KnownAuthority, state.id)
    if known is not None and known.version > state.version:
        return known
    if known is None:
        known = KnownAuthority(id=state.id)
        uow.session.add(known)
    known.version = state.version
    known.kind = state.kind
    known.country = state.country
    known.status = state.status
    known.language = state.language
    known.informal_name = state.informal_name
    known.names = {t.language: t.informal_name for t in state.translations if t.status != "outdated"}
    known.emails = [email.strip() for email in state.emails if email.strip()]
    known.areas = list(state.areas)
    known.allocation_enabled = state.allocation_enabled
    known.request_coordinators = [rc.model_dump(mode="json") for rc in state.request_coordinators]
    known.coordinator_settings = [s.model_dump(mode="json") for s in state.coordinator_settings]
    known.registered_by = state.registered_by
    return known


async def upsert_user(uow: UnitOfWork, state: UserState) -> KnownUser:
    known = await uow.session.get(KnownUser, state.id)
    if known is not None and known.version > state.version:
        return known
    if known is None:
        known = KnownUser(id=state.id)
        uow.session.add(known)
    known.version = state.version
    known.authority_id = state.authority_id
    # A deactivated user gets no alerts: their address is not kept either (rule P1).
    known.email = "" if state.status == DEACTIVATED else state.email.strip()
    known.language = state.language
    known.status = state.status
    known.digest = state.digest
    known.roles = [r.model_dump(mode="json") for r in state.roles]
    return known


def has_role(user: KnownUser, roles: Iterable[str], area: str | None = None) -> bool:
    """``user`` holds one of ``roles`` in ``area`` (an authority-wide role counts for every area)."""
    wanted = set(roles)
    return any(r["role"] in wanted and (area is None or r["area"] in (area, None)) for r in user.roles)


def can_receive(user: KnownUser) -> bool:
    return user.status != DEACTIVATED and bool(user.email)


async def users_of(uow: UnitOfWork, authority_id: uuid.UUID) -> list[KnownUser]:
    found = await uow.session.scalars(
        select(KnownUser).where(KnownUser.authority_id == authority_id).order_by(KnownUser.id)
    )
    return list(found.all())


async def users_with_role(
    uow: UnitOfWork, authority_id: uuid.UUID, roles: Iterable[str], area: str | None
) -> list[KnownUser]:
    """The users of ``authority_id`` holding one of ``roles`` in ``area``, inactive ones included
    (the caller records them as skipped)."""
    wanted = tuple(roles)
    return [user for user in await users_of(uow, authority_id) if has_role(user, wanted, area)]


def coordinator_setting(coordinator: KnownAuthority, area: str) -> dict[str, Any]:
    """Rules S14, S15: a coordinator's involvement in ``area`` (referral yes by default)."""
    for setting in coordinator.coordinator_settings:
        if setting["area"] == area:
            return setting
    return {"area": area, "referral": "yes", "approve_requests": False, "approve_replies": False}


def authority_name(authority: KnownAuthority | None, language: str) -> str:
    """The authority's informal name in ``language`` when translated (rule S1), else as written."""
    if authority is None:
        return ""
    return authority.names.get(language) or authority.informal_name


async def request_snapshot_when_empty(runtime: ServiceRuntime) -> bool:
    """A consumer that starts empty asks the registry to republish its state, once per start."""
    async with runtime.messaging.transaction() as uow:
        count = await uow.session.scalar(select(func.count()).select_from(KnownAuthority))
        if count:
            return False
        await uow.emit(REGISTRY_SNAPSHOT_REQUESTED, SnapshotRequest(reason="the notifier's read model is empty"))
    return True
