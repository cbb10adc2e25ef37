"""Logging in (rule S12), lockout and refresh tokens (DOMAIN.md, "Lost credentials").

Step one takes the user name and the password. A temporary password (a new user, or after a reset)
leads to the setup step: the user chooses a password and a 12-digit security code. Otherwise step
two asks three distinct random positions of the security code, once. Success gives a short-lived
access token (:mod:`services.registry.tokens`) and a refresh token.

Refusals do not tell who exists: an unknown user name, a wrong password, a deactivated user (or
authority) and a locked account asked with a wrong password all get the same ``invalid_credentials``
answer after the same argon2 work. Only whoever gives a locked account's right password learns that
it is locked (``account_locked``), so they know to ask for a reset.

Five failures in a row (wrong password or wrong security-code digits) lock the account until a
reset; only a completed login resets the count (a right password alone does not: else someone who
knows the password could guess the code forever). A failure is bookkeeping that must outlive the
refused request: it is raised as a :class:`RecordedRefusal`, which :func:`attempt` commits before
passing it on; every other error rolls its transaction back.

Refresh tokens are opaque random strings of which only a SHA-256 hash is kept. Each use rotates it;
presenting a rotated (or revoked) one again revokes its whole family, the thief's copy and the
user's alike. Login challenges and setup tokens are opaque too: their row id is a hash of them.

These functions know nothing of HTTP; every time comes from ``uow.clock``.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import raiseload

from services.registry import security
from services.registry.models import (
    Authority,
    AuthorityStatus,
    Credentials,
    LoginChallenge,
    RefreshToken,
    User,
    UserStatus,
)
from services.registry.state import user_changed
from services.registry.tokens import ACCESS_TOKEN_TTL, issue_access_token
from shared.contracts.registry import USER_LOCKED, USER_UPDATED, UserLocked
from shared.errors import ApiError
from shared.keys import security_code_key
from shared.logging import get_logger
from shared.outbox import Messaging, UnitOfWork
from shared.settings import Settings

log = get_logger(__name__)

MAX_FAILED_ATTEMPTS = 5
CODE_CHALLENGE_TTL = timedelta(minutes=5)
SETUP_TOKEN_TTL = timedelta(minutes=15)
REFRESH_TOKEN_TTL = timedelta(days=30)
PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 128

CODE = "code"
SETUP = "setup"


class RecordedRefusal(ApiError):
    """A refusal whose bookkeeping (failure count, lock, spent challenge, revoked tokens) must stay:
    inside :func:`attempt` its transaction commits before the refusal reaches the caller."""


@asynccontextmanager
async def attempt(messaging: Messaging) -> AsyncIterator[UnitOfWork]:
    """A unit of work for the login steps: commits on success and on a :class:`RecordedRefusal`
    (then re-raises it), rolls back on any other error."""
    refusal: RecordedRefusal | None = None
    async with messaging.transaction() as uow:
        try:
            yield uow
        except RecordedRefusal as exc:
            refusal = exc
    if refusal is not None:
        raise refusal


# -- answers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetupRequired:
    """A temporary password was given: choose a password and a security code with this token."""

    setup_token: str
    expires_at: datetime


@dataclass(frozen=True)
class CodeRequired:
    """The password was right: give the digits of the security code at these positions (1-based)."""

    challenge_id: str
    positions: list[int]
    expires_at: datetime


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    access_expires_in: timedelta
    refresh_token: str
    refresh_expires_in: timedelta


# -- refusals (new instances each time: an exception carries its traceback) -------------------


def invalid_credentials(recorded: bool = False) -> ApiError:
    kind = RecordedRefusal if recorded else ApiError
    return kind(401, "invalid_credentials", "the user name or the password is wrong")


def account_locked(recorded: bool = False) -> ApiError:
    kind = RecordedRefusal if recorded else ApiError
    return kind(
        403,
        "account_locked",
        "this account is locked after five failed attempts; ask a local data administrator to reset the password",
    )


def invalid_challenge(recorded: bool = False) -> ApiError:
    kind = RecordedRefusal if recorded else ApiError
    return kind(401, "invalid_challenge", "this login step is unknown, used or expired; log in again")


def invalid_setup_token() -> ApiError:
    return ApiError(401, "invalid_setup_token", "this setup token is unknown, used or expired; log in again")


def invalid_refresh_token(recorded: bool = False) -> ApiError:
    kind = RecordedRefusal if recorded else ApiError
    return kind(401, "invalid_refresh_token", "this refresh token is not valid; log in again")


# -- helpers ------------------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    """Datetimes read back from SQLite have lost their (UTC) time zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _challenge_key(secret: str) -> uuid.UUID:
    """The row id of a challenge: a hash of the secret handed to the user, never the secret."""
    return uuid.UUID(bytes=hashlib.sha256(secret.encode()).digest()[:16])


def _needs_setup(credentials: Credentials) -> bool:
    return credentials.password_is_temporary or credentials.security_code is None


async def _user(uow: UnitOfWork, criterion: ColumnElement[bool]) -> User | None:
    # FOR UPDATE: concurrent attempts on one account count one after the other.
    statement = select(User).where(criterion).with_for_update()
    user: User | None = await uow.session.scalar(statement)
    return user


async def _authority(uow: UnitOfWork, user: User) -> Authority:
    authority = await uow.session.get(Authority, user.authority_id, options=[raiseload("*")])
    if authority is None:  # a foreign key guarantees it
        raise RuntimeError(f"user {user.id} has no authority")
    return authority


async def _may_log_in(uow: UnitOfWork, user: User) -> bool:
    """Not deactivated, nor is the user's authority (a locked user is told apart by the caller)."""
    if user.status == UserStatus.deactivated:
        return False
    return (await _authority(uow, user)).status != AuthorityStatus.deactivated


async def _count_failure(uow: UnitOfWork, user: User, credentials: Credentials) -> bool:
    """One more failed attempt; the fifth in a row locks the account. True when it did."""
    credentials.failed_attempts = (credentials.failed_attempts or 0) + 1
    if credentials.failed_attempts < MAX_FAILED_ATTEMPTS or user.status != UserStatus.active:
        return False
    user.status = UserStatus.locked
    await user_changed(
        uow,
        user,
        USER_UPDATED,
        actor=None,
        action="locked",
        changes={"status": UserStatus.locked.value, "failed_attempts": credentials.failed_attempts},
    )
    await uow.emit(USER_LOCKED, UserLocked(user_id=user.id, authority_id=user.authority_id))
    await revoke_user_sessions(uow, user.id)
    log.warning("account locked after failed login attempts", user_id=str(user.id))
    return True


async def _challenge(uow: UnitOfWork, secret: str, purpose: str) -> LoginChallenge | None:
    """The unused, unexpired challenge of ``purpose`` that ``secret`` names, locked; else None."""
    challenge = await uow.session.get(LoginChallenge, _challenge_key(secret), with_for_update=True)
    if (
        challenge is None
        or challenge.purpose != purpose
        or challenge.used_at is not None
        or _aware(challenge.expires_at) <= uow.clock.now()
    ):
        return None
    return challenge


def _issued_before_credentials_changed(challenge: LoginChallenge, credentials: Credentials, ttl: timedelta) -> bool:
    """A reset since the challenge was issued makes it worthless."""
    return _aware(credentials.changed_at) > _aware(challenge.expires_at) - ttl


async def _open_session(uow: UnitOfWork, settings: Settings, user: User, family_id: uuid.UUID | None) -> TokenPair:
    """An access token and a refresh token (of a new family, or the next of ``family_id``)."""
    now = uow.clock.now()
    access_token = issue_access_token(settings, user, await _authority(uow, user), now, ACCESS_TOKEN_TTL)
    refresh_token = secrets.token_urlsafe(32)
    uow.session.add(
        RefreshToken(
            family_id=family_id or uuid.uuid4(),
            user_id=user.id,
            token_hash=_digest(refresh_token),
            issued_at=now,
            expires_at=now + REFRESH_TOKEN_TTL,
        )
    )
    return TokenPair(access_token, ACCESS_TOKEN_TTL, refresh_token, REFRESH_TOKEN_TTL)


async def _revoke_family(uow: UnitOfWork, family_id: uuid.UUID) -> None:
    await uow.session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=uow.clock.now())
    )


async def revoke_user_sessions(uow: UnitOfWork, user_id: uuid.UUID) -> None:
    """Revoke every refresh token of the user (a lock, a reset, a deactivation, a new password).
    Access tokens already issued stay valid until they expire (15 minutes at most)."""
    await uow.session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=uow.clock.now())
    )


def password_problem(password: str) -> str | None:
    """Why ``password`` is refused as a new password, or None."""
    if len(password) < PASSWORD_MIN_LENGTH or len(password) > PASSWORD_MAX_LENGTH:
        return f"a password has {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters"
    if not any(c.isupper() for c in password) or not any(c.islower() for c in password):
        return "a password has upper-case and lower-case letters"
    if not any(c.isdigit() for c in password):
        return "a password has at least one digit"
    return None


# -- the steps ----------------------------------------------------------------------------------


async def start_login(
    uow: UnitOfWork, settings: Settings, username: str, password: str
) -> SetupRequired | CodeRequired:
    """Step one (rule S12): user name and password (case-sensitive)."""
    now = uow.clock.now()
    user = await _user(uow, User.username == username)
    credentials = user.credentials if user is not None else None
    # Always one argon2 verification (against a dummy hash for an unknown user), off the event loop.
    password_ok = await asyncio.to_thread(
        security.verify_password, credentials.password_hash if credentials else None, password
    )
    if user is None or credentials is None or not await _may_log_in(uow, user):
        raise invalid_credentials()
    if user.status == UserStatus.locked:
        raise account_locked() if password_ok else invalid_credentials()
    if not password_ok:
        await _count_failure(uow, user, credentials)
        # Even the locking failure answers invalid_credentials: only the right password learns of a lock.
        raise invalid_credentials(recorded=True)
    if _needs_setup(credentials):
        setup_token = secrets.token_urlsafe(32)
        expires_at = now + SETUP_TOKEN_TTL
        uow.session.add(
            LoginChallenge(
                id=_challenge_key(setup_token), user_id=user.id, positions=[], purpose=SETUP, expires_at=expires_at
            )
        )
        return SetupRequired(setup_token, expires_at)
    challenge_id = secrets.token_urlsafe(32)
    positions = security.choose_positions()
    expires_at = now + CODE_CHALLENGE_TTL
    uow.session.add(
        LoginChallenge(
            id=_challenge_key(challenge_id), user_id=user.id, positions=positions, purpose=CODE, expires_at=expires_at
        )
    )
    return CodeRequired(challenge_id, positions, expires_at)


async def finish_login(
    uow: UnitOfWork,
    settings: Settings,
    challenge_id: str,
    digits: dict[int, str],
    on_account: Callable[[str], None] | None = None,
) -> TokenPair:
    """Step two (rule S12): the digits at the three positions asked. The challenge is spent by any
    answer; wrong digits (or other positions than those asked) count as a failed attempt.
    ``on_account`` is told the user name once the challenge names a user (the rate limit per
    account, :mod:`services.registry.rate_limits`; what it raises rolls everything back)."""
    challenge = await _challenge(uow, challenge_id, CODE)
    if challenge is None:
        raise invalid_challenge()
    challenge.used_at = uow.clock.now()
    user = await _user(uow, User.id == challenge.user_id)
    if user is not None and on_account is not None:
        on_account(user.username)
    credentials = user.credentials if user is not None else None
    if (
        user is None
        or credentials is None
        or credentials.security_code is None
        or _issued_before_credentials_changed(challenge, credentials, CODE_CHALLENGE_TTL)
    ):
        raise invalid_challenge(recorded=True)  # spent: a reset since it was asked makes it worthless
    if not await _may_log_in(uow, user):
        raise invalid_credentials(recorded=True)
    if user.status == UserStatus.locked:
        raise account_locked(recorded=True)
    answered = sorted(digits) == sorted(challenge.positions) and security.security_code_matches(
        security_code_key(settings), user.id, credentials.security_code, digits
    )
    if not answered:
        if await _count_failure(uow, user, credentials):
            raise account_locked(recorded=True)
        raise RecordedRefusal(401, "wrong_security_code", "the digits of the security code are wrong; log in again")
    credentials.failed_attempts = 0
    return await _open_session(uow, settings, user, family_id=None)


async def complete_setup(
    uow: UnitOfWork,
    settings: Settings,
    setup_token: str,
    new_password: str,
    security_code: str,
    on_account: Callable[[str], None] | None = None,
) -> TokenPair:
    """First login, or the first after a reset (rule S12, "Lost credentials"): a new password and a
    new 12-digit security code replace the temporary password. A refused choice can be corrected
    with the same token until it expires. ``on_account``: as for :func:`finish_login`."""
    challenge = await _challenge(uow, setup_token, SETUP)
    if challenge is None:
        raise invalid_setup_token()
    user = await _user(uow, User.id == challenge.user_id)
    if user is not None and on_account is not None:
        on_account(user.username)
    credentials = user.credentials if user is not None else None
    if (
        user is None
        or credentials is None
        or not _needs_setup(credentials)
        or _issued_before_credentials_changed(challenge, credentials, SETUP_TOKEN_TTL)
        or not await _may_log_in(uow, user)
    ):
        raise invalid_setup_token()
    if user.status == UserStatus.locked:
        raise account_locked()
    problem = password_problem(new_password)
    if problem is not None:
        raise ApiError(422, "weak_password", problem, field="new_password")
    if not security.is_valid_security_code(security_code):
        raise ApiError(
            422, "invalid_security_code", "a security code is exactly 12 digits (0-9)", field="security_code"
        )
    if await asyncio.to_thread(security.verify_password, credentials.password_hash, new_password):
        raise ApiError(
            422, "password_unchanged", "choose a password other than the temporary one", field="new_password"
        )
    now = uow.clock.now()
    credentials.password_hash = await asyncio.to_thread(security.hash_password, new_password)
    credentials.password_is_temporary = False
    credentials.security_code = security.encrypt_security_code(security_code_key(settings), user.id, security_code)
    credentials.failed_attempts = 0
    credentials.changed_at = now
    challenge.used_at = now
    await revoke_user_sessions(uow, user.id)
    return await _open_session(uow, settings, user, family_id=None)


async def refresh(uow: UnitOfWork, settings: Settings, token: str) -> TokenPair:
    """A new token pair for a valid refresh token, which is rotated (usable once). A rotated or
    revoked token presented again revokes its family: someone else may hold a copy."""
    row = await uow.session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == _digest(token)).with_for_update()
    )
    if row is None:
        raise invalid_refresh_token()
    if row.rotated_at is not None or row.revoked_at is not None:
        if row.revoked_at is None:
            log.warning("a rotated refresh token was presented again; its family is revoked", user_id=str(row.user_id))
        await _revoke_family(uow, row.family_id)
        raise invalid_refresh_token(recorded=True)
    if _aware(row.expires_at) <= uow.clock.now():
        raise invalid_refresh_token()
    user = await _user(uow, User.id == row.user_id)
    if user is None or user.status != UserStatus.active or not await _may_log_in(uow, user):
        await _revoke_family(uow, row.family_id)
        raise invalid_refresh_token(recorded=True)
    row.rotated_at = uow.clock.now()
    return await _open_session(uow, settings, user, family_id=row.family_id)


async def logout(uow: UnitOfWork, token: str) -> None:
    """Revoke the refresh token's family. Unknown tokens are ignored: logging out always succeeds."""
    family_id = await uow.session.scalar(
        select(RefreshToken.family_id).where(RefreshToken.token_hash == _digest(token))
    )
    if family_id is not None:
        await _revoke_family(uow, family_id)
