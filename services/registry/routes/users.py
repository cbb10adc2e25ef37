"""Users and their roles (rules S7–S11, S13, "lost credentials")."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response
from sqlalchemy import select

from services.registry import users
from services.registry.access import forbidden, load_actor
from services.registry.authorities import get_authority
from services.registry.models import User
from services.registry.routes.authorities import ERRORS
from services.registry.schemas import RoleGrant, RolesIn, UserCreated, UserIn, UsernameOut, UserOut, UserPatch
from shared.auth import CurrentPrincipal
from shared.service import Runtime

router = APIRouter(tags=["users"], responses=ERRORS)


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


@router.post("/authorities/{authority_id}/users", status_code=201, response_model=UserCreated)
async def register_user(
    authority_id: uuid.UUID, body: UserIn, runtime: Runtime, principal: CurrentPrincipal
) -> UserCreated:
    """Rules S10, S11: the system makes the user name, answered here to the administrator only (to
    be told in person); the temporary password goes to the user's own e-mail address."""
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        user = await users.register_user(uow, runtime.settings, actor, authority_id, body)
        return UserCreated(id=user.id, username=user.username)


@router.get("/authorities/{authority_id}/users", response_model=list[UserOut])
async def list_users(authority_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> list[UserOut]:
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        authority = await get_authority(uow, authority_id)
        if actor.authority.id != authority.id and not actor.is_data_administrator_for(authority):
            raise forbidden("an authority's users are listed to its own users and its coordinator")
        found = await uow.session.scalars(select(User).where(User.authority_id == authority_id).order_by(User.name))
        return [user_out(u) for u in found]


@router.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> UserOut:
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        user = await users.get_user(uow, user_id)
        authority = await get_authority(uow, user.authority_id)
        if actor.authority.id != user.authority_id and not actor.is_data_administrator_for(authority):
            raise forbidden("a user is shown to colleagues and to the authority's coordinator")
        return user_out(user)


@router.patch("/users/{user_id}", response_model=UserOut)
async def update_user(user_id: uuid.UUID, body: UserPatch, runtime: Runtime, principal: CurrentPrincipal) -> UserOut:
    """Contact details, language, e-mail, digest choice and user name (rule S11: it can be changed)."""
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        return user_out(await users.update_user(uow, actor, user_id, body))


@router.put("/users/{user_id}/roles", response_model=UserOut)
async def set_roles(user_id: uuid.UUID, body: RolesIn, runtime: Runtime, principal: CurrentPrincipal) -> UserOut:
    """Rule S9: roles per legislative area, and the authority-wide local data administrator."""
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        return user_out(await users.set_roles(uow, actor, user_id, body.roles))


@router.get("/users/{user_id}/username", response_model=UsernameOut)
async def lookup_username(user_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> UsernameOut:
    """Lost credentials: an administrator looks up a user name, to tell it in person (rule S11)."""
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        user = await users.lookup_username(uow, actor, user_id)
        return UsernameOut(id=user.id, username=user.username)


@router.post("/users/{user_id}/password-reset", status_code=204)
async def reset_password(user_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> Response:
    """The user gets a new temporary password by e-mail and chooses a new security code."""
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        await users.reset_password(uow, runtime.settings, actor, user_id)
    return Response(status_code=204)


@router.post("/users/{user_id}/deactivate", response_model=UserOut)
async def deactivate_user(user_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> UserOut:
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        return user_out(await users.deactivate_user(uow, actor, user_id))
