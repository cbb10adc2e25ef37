"""Who may do what in the registry. The token says who calls; the registry's own rows say what
they may do now (a role removed a minute ago no longer counts, whatever the token still says)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.registry.models import Authority, AuthorityKind, Role, User, UserStatus
from shared.auth import Principal
from shared.errors import ApiError
from shared.outbox import UnitOfWork


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(what: str, field: str | None = None) -> ApiError:
    return ApiError(404, "not_found", f"no such {what}", field=field)


@dataclass(frozen=True)
class Actor:
    principal: Principal
    user: User
    authority: Authority

    def has(self, role: Role, area: str | None = None) -> bool:
        """Whether the actor holds ``role`` (in ``area`` for per-area roles; in any area if None)."""
        for held in self.user.roles:
            if held.role != role:
                continue
            if not role.per_area or area is None or held.area == area:
                return True
        return False

    @property
    def is_commission(self) -> bool:
        return self.authority.kind == AuthorityKind.commission

    @property
    def is_coordinator(self) -> bool:
        return AuthorityKind(self.authority.kind).is_coordinator

    def is_local_data_administrator_of(self, authority_id: uuid.UUID) -> bool:
        """Rule S9: a local data administrator manages their own authority's data and users."""
        return self.authority.id == authority_id and self.has(Role.local_data_administrator)

    def coordinates(self, authority: Authority, area: str | None = None) -> bool:
        """Rule A2: whether the actor's authority is a coordinator responsible for ``authority`` (or,
        given ``area``, for it in that area: a delegated coordinator for an area gives it to an
        authority of its country that does not work in it yet)."""
        mine = self.authority
        if mine.kind == AuthorityKind.commission:
            return authority.kind == AuthorityKind.national_coordinator or authority.registered_by_id == mine.id
        if not self.is_coordinator or mine.country != authority.country or mine.id == authority.id:
            return False
        # The Commission's helpdesk (registered in Belgium) answers to no country's coordinator.
        if authority.kind == AuthorityKind.commission:
            return False
        if authority.registered_by_id == mine.id or mine.kind == AuthorityKind.national_coordinator:
            return True
        # Lower coordinators coordinate competent authorities, not the other coordinators.
        if authority.kind != AuthorityKind.competent_authority:
            return False
        if mine.kind == AuthorityKind.super_delegated_coordinator:
            return mine.region is not None and mine.region == authority.region
        # A delegated coordinator covers one legislative area or one region.
        if mine.region is not None and mine.coordinator_area is None:
            return mine.region == authority.region
        if mine.coordinator_area is None:
            return False
        return mine.coordinator_area == area or mine.coordinator_area in {a.area for a in authority.areas}

    def is_data_administrator_for(self, authority: Authority, area: str | None = None) -> bool:
        """Rule S13: a coordinator's data administrator (for ``area``, or for any area) managing
        an authority the coordinator is responsible for. The Commission acts for coordinators."""
        if not self.coordinates(authority, area):
            return False
        if self.is_commission:
            return self.has(Role.local_data_administrator) or self.has(Role.data_administrator, area)
        return self.has(Role.data_administrator, area)


async def load_actor(uow: UnitOfWork, principal: Principal) -> Actor:
    try:
        user_id = uuid.UUID(principal.user_id)
    except ValueError as exc:
        raise ApiError(401, "invalid_token", "the token names no user") from exc
    user = await uow.session.get(User, user_id)
    if user is None or user.status != UserStatus.active:
        raise ApiError(401, "invalid_token", "this account can no longer act")
    authority = await uow.session.get(Authority, user.authority_id)
    assert authority is not None
    return Actor(principal=principal, user=user, authority=authority)
