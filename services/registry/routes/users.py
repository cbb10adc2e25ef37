"""Users and their roles (rules S7–S11, S13, "lost credentials")."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response
from sqlalchemy import select

from services.registry import users
from services.registry.access import forbidden, load_actor
from services.registry.authorities import get_authority
from services.registry.models import User
from services.registry.routes.refusals import (
    ALLOCATION_NEEDS_ALLOCATOR,
    AUTHORITY_NOT_FOUND,
    EMAIL_IN_USE,
    ROLE_GRANTS,
    UNKNOWN_LANGUAGE,
    USER_NOT_FOUND,
    signed_in,
)
from services.registry.schemas import RoleGrant, RolesIn, UserCreated, UserIn, UsernameOut, UserOut, UserPatch
from shared.auth import CurrentPrincipal
from shared.errors import Refusal
from shared.service import Runtime

router = APIRouter(tags=["users"])


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        authority_id=user.authority_id,
        name=user.name,
        email=user.email,
        phone=user.phone,
        language=user.language,
        status=user.status,
        digest=user.digest,
        roles=[RoleGrant(role=r.role, area=r.area) for r in sorted(user.roles, key=lambda r: (r.area or "", r.role))],
    )


@router.post(
    "/authorities/{authority_id}/users",
    status_code=201,
    response_model=UserCreated,
    summary="Register a user (the user name is answered once)",
    responses=signed_in(
        Refusal(403, "forbidden", "only a local data administrator of this authority registers its users"),
        AUTHORITY_NOT_FOUND,
        EMAIL_IN_USE,
        UNKNOWN_LANGUAGE,
        ROLE_GRANTS,
    ),
)
async def register_user(
    authority_id: uuid.UUID, body: UserIn, runtime: Runtime, principal: CurrentPrincipal
) -> UserCreated:
    """Rules S10, S11: the system makes the user name, answered here to the administrator only (to
    be told in person); the temporary password goes to the user's own e-mail address."""
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        user = await users.register_user(uow, runtime.settings, actor, authority_id, body)
        return UserCreated(id=user.id, username=user.username)


@router.get(
    "/authorities/{authority_id}/users",
    response_model=list[UserOut],
    summary="An authority's users",
    responses=signed_in(
        Refusal(403, "forbidden", "an authority's users are listed to its own users and its coordinator"),
        AUTHORITY_NOT_FOUND,
    ),
)
async def list_users(authority_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> list[UserOut]:
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        authority = await get_authority(uow, authority_id)
        if actor.authority.id != authority.id and not actor.is_data_administrator_for(authority):
            raise forbidden("an authority's users are listed to its own users and its coordinator")
        found = await uow.session.scalars(select(User).where(User.authority_id == authority_id).order_by(User.name))
        return [user_out(u) for u in found]


@router.get(
    "/users/{user_id}",
    response_model=UserOut,
    summary="A user",
    responses=signed_in(
        Refusal(403, "forbidden", "a user is shown to colleagues and to the authority's coordinator"),
        USER_NOT_FOUND,
    ),
)
async def get_user(user_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> UserOut:
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        user = await users.get_user(uow, user_id)
        authority = await get_authority(uow, user.authority_id)
        if actor.authority.id != user.authority_id and not actor.is_data_administrator_for(authority):
            raise forbidden("a user is shown to colleagues and to the authority's coordinator")
        return user_out(user)


@router.patch(
    "/users/{user_id}",
    response_model=UserOut,
    summary="Update a user's contact details, language, digest choice or user name",
    responses=signed_in(
        Refusal(403, "forbidden", "users change their own data; local data administrators change their colleagues'"),
        USER_NOT_FOUND,
        EMAIL_IN_USE,
        Refusal(409, "username_in_use", "this user name is taken", field="username"),
        UNKNOWN_LANGUAGE,
        Refusal(422, "value_required", "phone cannot be emptied with null", field="phone"),
    ),
)
async def update_user(user_id: uuid.UUID, body: UserPatch, runtime: Runtime, principal: CurrentPrincipal) -> UserOut:
    """Contact details, language, e-mail, digest choice and user name (rule S11: it can be changed)."""
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        return user_out(await users.update_user(uow, actor, user_id, body))


@router.put(
    "/users/{user_id}/roles",
    response_model=UserOut,
    summary="Set a user's roles (S9)",
    responses=signed_in(
        Refusal(403, "forbidden", "only a local data administrator of this authority changes its users' roles"),
        USER_NOT_FOUND,
        ALLOCATION_NEEDS_ALLOCATOR,
        Refusal(409, "last_local_data_administrator", "the authority would have no local data administrator"),
        ROLE_GRANTS,
    ),
)
async def set_roles(user_id: uuid.UUID, body: RolesIn, runtime: Runtime, principal: CurrentPrincipal) -> UserOut:
    """Rule S9: roles per legislative area, and the authority-wide local data administrator."""
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        return user_out(await users.set_roles(uow, actor, user_id, body.roles))


@router.get(
    "/users/{user_id}/username",
    response_model=UsernameOut,
    summary="Look a user name up (lost credentials, S11)",
    responses=signed_in(
        Refusal(
            403, "forbidden", "only the authority's local data administrators or its coordinator look user names up"
        ),
        USER_NOT_FOUND,
    ),
)
async def lookup_username(user_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> UsernameOut:
    """Lost credentials: an administrator looks up a user name, to tell it in person (rule S11)."""
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        user = await users.lookup_username(uow, actor, user_id)
        return UsernameOut(id=user.id, username=user.username)


@router.post(
    "/users/{user_id}/password-reset",
    status_code=204,
    summary="Reset a user's password (a new temporary one by e-mail)",
    responses=signed_in(
        Refusal(403, "forbidden", "a local data administrator resets colleagues' passwords"),
        USER_NOT_FOUND,
        Refusal(409, "user_deactivated", "this user is deactivated"),
    ),
)
async def reset_password(user_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> Response:
    """The user gets a new temporary password by e-mail and chooses a new security code."""
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        await users.reset_password(uow, runtime.settings, actor, user_id)
    return Response(status_code=204)


@router.post(
    "/users/{user_id}/deactivate",
    response_model=UserOut,
    summary="Deactivate a user",
    responses=signed_in(
        Refusal(403, "forbidden", "a local data administrator deactivates colleagues' accounts"),
        USER_NOT_FOUND,
        Refusal(409, "allocation_needs_allocator", "'professional_qualifications' would be left without an allocator"),
    ),
)
async def deactivate_user(user_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> UserOut:
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        return user_out(await users.deactivate_user(uow, actor, user_id))
