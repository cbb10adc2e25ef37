"""Users and their roles (rules S7–S11, S13 and "lost credentials")."""

from __future__ import annotations

import asyncio
import secrets
import unicodedata
import uuid
from collections.abc import Iterable

from sqlalchemy import func, select

from services.registry.access import Actor, forbidden, not_found
from services.registry.login import revoke_user_sessions
from services.registry.models import Authority, AuthorityKind, Credentials, Role, User, UserRole, UserStatus
from services.registry.schemas import RoleGrant, UserIn, UserPatch
from services.registry.security import generate_temporary_password, hash_password
from services.registry.state import audit, user_changed
from services.registry.validation import check_area, check_language, invalid
from shared.contracts.registry import (
    TEMPORARY_PASSWORD_ISSUED,
    USER_DEACTIVATED,
    USER_REGISTERED,
    USER_UPDATED,
    TemporaryPassword,
)
from shared.errors import ApiError
from shared.outbox import UnitOfWork
from shared.sealing import seal
from shared.settings import Settings


def first_user_roles(authority: Authority, areas: Iterable[str]) -> list[RoleGrant]:
    """Rule S9: the first user of an authority has every right (S13: a coordinator's, data administration)."""
    grants = [RoleGrant(role=Role.local_data_administrator)]
    per_area = [Role.request_handler, Role.allocator, Role.referral_user]
    if AuthorityKind(authority.kind).is_coordinator:
        per_area.append(Role.data_administrator)
    if authority.kind == AuthorityKind.commission:
        grants.append(RoleGrant(role=Role.translator))
    grants += [RoleGrant(role=role, area=area) for area in sorted(areas) for role in per_area]
    return grants


def check_role_grants(authority: Authority, grants: Iterable[RoleGrant], areas: set[str]) -> list[RoleGrant]:
    """Refuse a role the authority cannot hold: per-area roles in an area it works in, data
    administration for coordinators only (S13), translation for the Commission only (A3)."""
    checked: dict[tuple[str, str | None], RoleGrant] = {}
    for grant in grants:
        role = Role(grant.role)
        if role.per_area:
            if grant.area is None:
                raise invalid("role_needs_area", f"{role.value} is given per legislative area", "roles")
            check_area(grant.area, "roles")
            if grant.area not in areas:
                raise invalid("area_not_granted", f"the authority does not work in {grant.area!r}", "roles")
        elif grant.area is not None:
            raise invalid("role_has_no_area", f"{role.value} is authority-wide", "roles")
        if role == Role.data_administrator and not AuthorityKind(authority.kind).is_coordinator:
            raise invalid("role_not_allowed", "only coordinators have data administrators (rule S13)", "roles")
        if role == Role.translator and authority.kind != AuthorityKind.commission:
            raise invalid("role_not_allowed", "translators belong to the Commission (rule A3)", "roles")
        checked[(role.value, grant.area)] = RoleGrant(role=role, area=grant.area)
    return list(checked.values())


def _username_base(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    words = ["".join(ch for ch in word if ch.isalnum()) for word in ascii_name.split()]
    base = ".".join(w for w in words if w)[:40]
    return base if len(base) >= 3 else "user"


async def _new_username(uow: UnitOfWork, name: str) -> str:
    """Rule S11: the system generates the user name."""
    base = _username_base(name)
    while True:
        candidate = f"{base}.{secrets.randbelow(10_000):04d}"
        if await uow.session.scalar(select(User.id).where(User.username == candidate)) is None:
            return candidate


async def _email_in_use(uow: UnitOfWork, email: str, except_user: uuid.UUID | None = None) -> bool:
    query = select(User.id).where(func.lower(User.email) == email.lower())
    if except_user is not None:
        query = query.where(User.id != except_user)
    return await uow.session.scalar(query) is not None


async def granted_areas(uow: UnitOfWork, authority: Authority) -> set[str]:
    await uow.session.refresh(authority, ["areas"])
    return {a.area for a in authority.areas}


async def create_user(
    uow: UnitOfWork,
    settings: Settings,
    authority: Authority,
    data: UserIn,
    *,
    actor: Actor | None,
    roles: list[RoleGrant],
) -> User:
    """Register a user (rule S10); the temporary password goes out only once the authority is active."""
    check_language(data.language)
    if await _email_in_use(uow, data.email):
        raise ApiError(409, "email_in_use", "another user already has this e-mail address", field="email")
    now = uow.clock.now()
    user = User(
        id=uuid.uuid4(),
        authority_id=authority.id,
        username=await _new_username(uow, data.name),
        name=data.name,
        email=data.email,
        phone=data.phone,
        language=data.language,
        status=UserStatus.active,
        digest=False,
        created_at=now,
        updated_at=now,
        version=1,
    )
    user.roles = [UserRole(area=grant.area, role=grant.role) for grant in roles]
    uow.session.add(user)
    await user_changed(
        uow,
        user,
        USER_REGISTERED,
        actor=actor.principal if actor else None,
        action="registered",
        changes={"roles": [g.model_dump(mode="json") for g in roles]},
        new=True,
    )
    if authority.status == "active":
        await issue_temporary_password(uow, settings, user, reason="new_user")
    return user


async def issue_temporary_password(uow: UnitOfWork, settings: Settings, user: User, *, reason: str) -> None:
    """Rule S11: a temporary password reaches the user only through the notifier's e-mail, sealed on
    the bus; the user chooses a new password and a new security code at the next login (S12)."""
    password = generate_temporary_password()
    password_hash = await asyncio.to_thread(hash_password, password)
    credentials = await uow.session.get(Credentials, user.id)
    if credentials is None:
        credentials = Credentials(user_id=user.id)
        uow.session.add(credentials)
    credentials.password_hash = password_hash
    credentials.password_is_temporary = True
    credentials.security_code = None
    credentials.failed_attempts = 0
    credentials.changed_at = uow.clock.now()
    await uow.emit(
        TEMPORARY_PASSWORD_ISSUED,
        TemporaryPassword(user_id=user.id, reason=reason, sealed_password=seal(settings, password)),
    )


async def get_user(uow: UnitOfWork, user_id: uuid.UUID) -> User:
    user = await uow.session.get(User, user_id)
    if user is None:
        raise not_found("user", "user_id")
    return user


async def _authority_of(uow: UnitOfWork, user: User) -> Authority:
    authority = await uow.session.get(Authority, user.authority_id)
    assert authority is not None
    return authority


async def register_user(
    uow: UnitOfWork, settings: Settings, actor: Actor, authority_id: uuid.UUID, data: UserIn
) -> User:
    """Rule S9: a local data administrator registers the users of their own authority."""
    authority = await uow.session.get(Authority, authority_id)
    if authority is None:
        raise not_found("authority", "authority_id")
    if not actor.is_local_data_administrator_of(authority.id):
        raise forbidden("only a local data administrator of this authority registers its users")
    roles = check_role_grants(authority, data.roles, await granted_areas(uow, authority))
    return await create_user(uow, settings, authority, data, actor=actor, roles=roles)


def may_manage(actor: Actor, user: User, authority: Authority) -> bool:
    return actor.is_local_data_administrator_of(user.authority_id) or actor.is_data_administrator_for(authority)


async def update_user(uow: UnitOfWork, actor: Actor, user_id: uuid.UUID, patch: UserPatch) -> User:
    user = await get_user(uow, user_id)
    if actor.user.id != user.id and not actor.is_local_data_administrator_of(user.authority_id):
        raise forbidden("users change their own data; local data administrators change their colleagues'")
    changes = patch.model_dump(exclude_unset=True, mode="json")
    for field, value in changes.items():
        if value is None:
            raise invalid("value_required", f"{field} cannot be emptied with null", field)
    if patch.language is not None:
        check_language(patch.language)
    if patch.email is not None and await _email_in_use(uow, patch.email, except_user=user.id):
        raise ApiError(409, "email_in_use", "another user already has this e-mail address", field="email")
    if patch.username is not None:
        taken = await uow.session.scalar(select(User.id).where(User.username == patch.username, User.id != user.id))
        if taken is not None:
            raise ApiError(409, "username_in_use", "this user name is taken", field="username")
    for field, value in changes.items():
        setattr(user, field, value)
    changes.pop("username", None)  # the audit records that it changed, not to what
    await user_changed(uow, user, USER_UPDATED, actor=actor.principal, action="updated", changes=changes)
    return user


async def set_roles(uow: UnitOfWork, actor: Actor, user_id: uuid.UUID, grants: list[RoleGrant]) -> User:
    """Rule S9: a local data administrator changes colleagues' rights, per legislative area."""
    user = await get_user(uow, user_id)
    authority = await _authority_of(uow, user)
    if not actor.is_local_data_administrator_of(authority.id):
        raise forbidden("only a local data administrator of this authority changes its users' roles")
    roles = check_role_grants(authority, grants, await granted_areas(uow, authority))
    if authority.allocation_enabled:
        # Rule S8: allocation on means an allocator must exist, in every area.
        for area in await granted_areas(uow, authority):
            others = await _holders(uow, authority.id, Role.allocator, area, except_user=user.id)
            if not others and not any(g.role == Role.allocator and g.area == area for g in roles):
                raise ApiError(
                    409,
                    "allocation_needs_allocator",
                    f"allocation is on: {area!r} would be left without an allocator",
                    field="roles",
                )
    loses_lda = any(r.role == Role.local_data_administrator for r in user.roles) and not any(
        g.role == Role.local_data_administrator for g in roles
    )
    if loses_lda and not await _holders(uow, authority.id, Role.local_data_administrator, None, except_user=user.id):
        raise ApiError(409, "last_local_data_administrator", "the authority would have no local data administrator")
    user.roles.clear()
    await uow.session.flush()
    user.roles.extend(UserRole(area=g.area, role=g.role) for g in roles)
    await user_changed(
        uow,
        user,
        USER_UPDATED,
        actor=actor.principal,
        action="roles_changed",
        changes={"roles": [g.model_dump(mode="json") for g in roles]},
    )
    return user


async def _holders(
    uow: UnitOfWork, authority_id: uuid.UUID, role: Role, area: str | None, *, except_user: uuid.UUID | None = None
) -> list[uuid.UUID]:
    query = (
        select(User.id)
        .join(UserRole, UserRole.user_id == User.id)
        .where(User.authority_id == authority_id, User.status == UserStatus.active, UserRole.role == role)
    )
    if area is not None:
        query = query.where(UserRole.area == area)
    if except_user is not None:
        query = query.where(User.id != except_user)
    return list((await uow.session.scalars(query)).all())


async def holders(uow: UnitOfWork, authority_id: uuid.UUID, role: Role, area: str | None) -> list[uuid.UUID]:
    return await _holders(uow, authority_id, role, area)


async def lookup_username(uow: UnitOfWork, actor: Actor, user_id: uuid.UUID) -> User:
    """Lost credentials: an administrator can look a user name up (and tells it in person, rule S11)."""
    user = await get_user(uow, user_id)
    authority = await _authority_of(uow, user)
    if not may_manage(actor, user, authority):
        raise forbidden("only the authority's local data administrators or its coordinator look user names up")
    await audit(uow, actor.principal, "user", user.id, "username_looked_up")
    return user


async def reset_password(uow: UnitOfWork, settings: Settings, actor: Actor, user_id: uuid.UUID) -> User:
    """Lost credentials: a local data administrator resets a colleague's password; the coordinator's
    data administrator resets a coordinated authority's local data administrator (rule S13). The
    account is unlocked; the user gets a temporary password by e-mail and chooses a new code."""
    user = await get_user(uow, user_id)
    authority = await _authority_of(uow, user)
    is_lda = any(r.role == Role.local_data_administrator for r in user.roles)
    allowed = (actor.is_local_data_administrator_of(authority.id) and actor.user.id != user.id) or (
        is_lda and actor.is_data_administrator_for(authority)
    )
    if not allowed:
        raise forbidden(
            "a local data administrator resets colleagues' passwords; a coordinator's data administrator "
            "resets those of coordinated authorities' local data administrators"
        )
    if user.status == UserStatus.deactivated:
        raise ApiError(409, "user_deactivated", "this user is deactivated")
    user.status = UserStatus.active
    await issue_temporary_password(uow, settings, user, reason="reset")
    await revoke_user_sessions(uow, user.id)
    await user_changed(uow, user, USER_UPDATED, actor=actor.principal, action="password_reset")
    return user


async def deactivate_user(uow: UnitOfWork, actor: Actor, user_id: uuid.UUID) -> User:
    user = await get_user(uow, user_id)
    if not actor.is_local_data_administrator_of(user.authority_id) or actor.user.id == user.id:
        raise forbidden("a local data administrator deactivates colleagues' accounts")
    authority = await _authority_of(uow, user)
    if authority.allocation_enabled and any(r.role == Role.allocator for r in user.roles):
        for area in {r.area for r in user.roles if r.role == Role.allocator}:
            if not await _holders(uow, authority.id, Role.allocator, area, except_user=user.id):
                raise ApiError(409, "allocation_needs_allocator", f"{area!r} would be left without an allocator")
    user.status = UserStatus.deactivated
    await revoke_user_sessions(uow, user.id)
    await user_changed(uow, user, USER_DEACTIVATED, actor=actor.principal, action="deactivated")
    return user
