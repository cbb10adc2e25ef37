"""The exchange's copy of the registry data it needs (ARCHITECTURE.md, Read models): authorities
with their areas, links, request coordinators and coordinator settings; users with their roles.
Built from the registry's full-state events; an older version never overwrites a newer one."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from services.exchange.models import KnownAuthority, KnownUser
from shared.contracts.exchange import REGISTRY_SNAPSHOT_REQUESTED, SnapshotRequest
from shared.contracts.registry import AuthorityState, UserState
from shared.outbox import UnitOfWork
from shared.service import ServiceRuntime


async def upsert_authority(uow: UnitOfWork, state: AuthorityState) -> None:
    known = await uow.session.get(KnownAuthority, state.id)
    if known is not None and known.version > state.version:
        return
    if known is None:
        known = KnownAuthority(id=state.id)
        uow.session.add(known)
    known.version = state.version
    known.kind = state.kind
    known.country = state.country
    known.status = state.status
    known.language = state.language
    known.official_name = state.official_name
    known.informal_name = state.informal_name
    known.areas = list(state.areas)
    known.allocation_enabled = state.allocation_enabled
    known.links = [str(link) for link in state.links]
    known.request_coordinators = [rc.model_dump(mode="json") for rc in state.request_coordinators]
    known.coordinator_settings = [s.model_dump(mode="json") for s in state.coordinator_settings]


async def upsert_user(uow: UnitOfWork, state: UserState) -> None:
    known = await uow.session.get(KnownUser, state.id)
    if known is not None and known.version > state.version:
        return
    if known is None:
        known = KnownUser(id=state.id)
        uow.session.add(known)
    known.version = state.version
    known.authority_id = state.authority_id
    known.status = state.status
    known.language = state.language
    known.roles = [r.model_dump(mode="json") for r in state.roles]


def has_role(user: KnownUser, role: str, area: str | None = None) -> bool:
    return any(r["role"] == role and (area is None or r["area"] in (area, None)) for r in user.roles)


def coordinator_setting(coordinator: KnownAuthority, area: str) -> dict[str, Any]:
    for setting in coordinator.coordinator_settings:
        if setting["area"] == area:
            return setting
    return {"area": area, "referral": "yes", "approve_requests": False, "approve_replies": False}


def request_coordinator_ids(authority: KnownAuthority, area: str) -> list[uuid.UUID]:
    """Rule S5: the coordinators linked to ``authority`` for ``area``."""
    return [uuid.UUID(rc["coordinator_id"]) for rc in authority.request_coordinators if rc["area"] == area]


def full_view_coordinator_ids(authority: KnownAuthority, area: str) -> set[uuid.UUID]:
    return {
        uuid.UUID(rc["coordinator_id"])
        for rc in authority.request_coordinators
        if rc["area"] == area and rc["full_view"]
    }


async def request_snapshot_when_empty(runtime: ServiceRuntime) -> None:
    """A consumer that starts empty asks the registry to republish its state (once)."""
    async with runtime.messaging.transaction() as uow:
        count = await uow.session.scalar(select(func.count()).select_from(KnownAuthority))
        if count:
            return
        await uow.emit(REGISTRY_SNAPSHOT_REQUESTED, SnapshotRequest(reason="the exchange's read model is empty"))
