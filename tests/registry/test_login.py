"""Logging in: password, then three digits of the security code (rule S12); the first login and the
first after a reset choose a password and a code; five failures lock the account until a reset
(DOMAIN.md, "Lost credentials"). Users are written straight into the registry's database here."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from services.registry import security
from services.registry.models import (
    AuditEntry,
    Authority,
    AuthorityKind,
    AuthorityStatus,
    Credentials,
    Role,
    User,
    UserRole,
    UserStatus,
)
from shared.keys import security_code_key
from tests.registry.conftest import RegistryUnderTest

PQ = "professional_qualifications"
PASSWORD = "Cluj-Napoca-2026"
CODE = "314159265358"
TEMPORARY = "Tmp4Xq9ZkP2mWr7a!"
NEW_PASSWORD = "Avram-Iancu-Street-1"
NEW_CODE = "271828182845"


@dataclass
class Account:
    user_id: uuid.UUID
    authority_id: uuid.UUID
    username: str
    password: str
    code: str | None


async def add_authority(
    registry: RegistryUnderTest,
    *,
    kind: AuthorityKind = AuthorityKind.competent_authority,
    status: AuthorityStatus = AuthorityStatus.active,
    region: str | None = "Cluj",
    coordinator_area: str | None = None,
) -> uuid.UUID:
    now = registry.clock.now()
    authority_id = uuid.uuid4()
    async with registry.runtime.messaging.transaction() as uow:
        uow.session.add(
            Authority(
                id=authority_id,
                kind=kind,
                country="RO",
                level="regional",
                region=region,
                official_name="Colegiul Medicilor Cluj",
                language="ro",
                informal_name="Colegiul regional al medicilor din Cluj",
                status=status,
                coordinator_area=coordinator_area,
                created_at=now,
                updated_at=now,
                version=1,
            )
        )
    return authority_id


async def add_account(
    registry: RegistryUnderTest,
    username: str = "ana.pop",
    *,
    password: str = PASSWORD,
    code: str | None = CODE,
    temporary: bool = False,
    status: UserStatus = UserStatus.active,
    roles: tuple[tuple[Role, str | None], ...] = ((Role.request_handler, PQ), (Role.local_data_administrator, None)),
    authority_id: uuid.UUID | None = None,
) -> Account:
    """A user with credentials: a chosen password and code, or (``temporary``) a temporary password."""
    authority_id = authority_id or await add_authority(registry)
    now = registry.clock.now()
    user_id = uuid.uuid4()
    key = security_code_key(registry.runtime.settings)
    async with registry.runtime.messaging.transaction() as uow:
        user = User(
            id=user_id,
            authority_id=authority_id,
            username=username,
            name="Ana Pop",
            email=f"user-{user_id.hex[:12]}@cmcluj.example.ro",
            language="ro",
            status=status,
            created_at=now,
            updated_at=now,
            version=1,
        )
        user.roles = [UserRole(role=role, area=area) for role, area in roles]
        user.credentials = Credentials(
            password_hash=security.hash_password(password),
            password_is_temporary=temporary,
            security_code=None if temporary or code is None else security.encrypt_security_code(key, user_id, code),
            failed_attempts=0,
            changed_at=now,
        )
        uow.session.add(user)
    return Account(user_id, authority_id, username, password, None if temporary else code)


def digits_for(code: str, positions: list[int]) -> dict[str, str]:
    return {str(position): code[position - 1] for position in positions}


def wrong_digits_for(code: str, positions: list[int]) -> dict[str, str]:
    return {str(position): str((int(code[position - 1]) + 1) % 10) for position in positions}


async def password_step(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/auth/login", json={"username": username, "password": password})


async def log_in(client: httpx.AsyncClient, account: Account) -> dict[str, Any]:
    """Both steps of a normal login; the token pair."""
    first = await password_step(client, account.username, account.password)
    assert first.status_code == 200, first.text
    assert first.json()["next"] == "security_code"
    assert account.code is not None
    second = await client.post(
        "/auth/login/code",
        json={
            "challenge_id": first.json()["challenge_id"],
            "digits": digits_for(account.code, first.json()["positions"]),
        },
    )
    assert second.status_code == 200, second.text
    tokens: dict[str, Any] = second.json()
    return tokens


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


async def credentials_of(registry: RegistryUnderTest, user_id: uuid.UUID) -> Credentials:
    async with registry.runtime.sessions() as session:
        credentials = await session.get(Credentials, user_id)
        assert credentials is not None
        return credentials


async def user_status(registry: RegistryUnderTest, user_id: uuid.UUID) -> str:
    async with registry.runtime.sessions() as session:
        return str(await session.scalar(select(User.status).where(User.id == user_id)))


# -- first login (rule S12) ---------------------------------------------------------------------


async def test_a_temporary_password_forces_choosing_a_password_and_security_code_rule_s12(registry):
    account = await add_account(registry, password=TEMPORARY, temporary=True)
    client = registry.client

    first = await password_step(client, account.username, TEMPORARY)
    assert first.status_code == 200
    assert first.json()["next"] == "setup"
    assert set(first.json()) == {"next", "setup_token", "expires_at"}
    assert first.headers["cache-control"] == "no-store"

    setup = await client.post(
        "/auth/setup",
        json={"setup_token": first.json()["setup_token"], "new_password": NEW_PASSWORD, "security_code": NEW_CODE},
    )
    assert setup.status_code == 200, setup.text
    assert setup.json()["token_type"] == "Bearer"
    assert setup.json()["expires_in"] == 15 * 60
    assert setup.json()["refresh_expires_in"] == 30 * 24 * 3600

    # The temporary password is gone; the new one leads to three positions of the new code.
    old = await password_step(client, account.username, TEMPORARY)
    assert (old.status_code, error_code(old)) == (401, "invalid_credentials")
    await log_in(client, Account(account.user_id, account.authority_id, account.username, NEW_PASSWORD, NEW_CODE))
    credentials = await credentials_of(registry, account.user_id)
    assert credentials.password_is_temporary is False
    assert credentials.password_hash.startswith("$argon2id$")


@pytest.mark.parametrize(
    ("new_password", "code", "status", "expected"),
    [
        ("Short-1a", NEW_CODE, 422, "weak_password"),  # fewer than 12 characters
        ("all-lower-case-42", NEW_CODE, 422, "weak_password"),
        ("ALL-UPPER-CASE-42", NEW_CODE, 422, "weak_password"),
        ("No-Digits-At-All", NEW_CODE, 422, "weak_password"),
        (TEMPORARY, NEW_CODE, 422, "password_unchanged"),
        (NEW_PASSWORD, "12345678901", 422, "invalid_security_code"),  # 11 digits
        (NEW_PASSWORD, "1234567890ab", 422, "invalid_security_code"),
        (NEW_PASSWORD, "١٢٣٤٥٦٧٨٩٠١٢", 422, "invalid_security_code"),  # not ASCII digits
    ],
)
async def test_the_new_password_must_be_strong_and_the_code_twelve_digits_rule_s12(
    registry, new_password, code, status, expected
):
    account = await add_account(registry, password=TEMPORARY, temporary=True)
    token = (await password_step(registry.client, account.username, TEMPORARY)).json()["setup_token"]

    refused = await registry.client.post(
        "/auth/setup", json={"setup_token": token, "new_password": new_password, "security_code": code}
    )
    assert (refused.status_code, error_code(refused)) == (status, expected)
    assert (await credentials_of(registry, account.user_id)).password_is_temporary is True

    # The same token still serves for a better choice.
    accepted = await registry.client.post(
        "/auth/setup", json={"setup_token": token, "new_password": NEW_PASSWORD, "security_code": NEW_CODE}
    )
    assert accepted.status_code == 200, accepted.text


async def test_a_setup_token_serves_once_and_for_fifteen_minutes(registry):
    account = await add_account(registry, password=TEMPORARY, temporary=True)
    body = {"new_password": NEW_PASSWORD, "security_code": NEW_CODE}

    late = (await password_step(registry.client, account.username, TEMPORARY)).json()["setup_token"]
    registry.clock.travel(timedelta(minutes=15, seconds=1))
    expired = await registry.client.post("/auth/setup", json={"setup_token": late, **body})
    assert (expired.status_code, error_code(expired)) == (401, "invalid_setup_token")

    token = (await password_step(registry.client, account.username, TEMPORARY)).json()["setup_token"]
    assert (await registry.client.post("/auth/setup", json={"setup_token": token, **body})).status_code == 200
    again = await registry.client.post("/auth/setup", json={"setup_token": token, **body})
    assert (again.status_code, error_code(again)) == (401, "invalid_setup_token")
    unknown = await registry.client.post("/auth/setup", json={"setup_token": "x" * 43, **body})
    assert (unknown.status_code, error_code(unknown)) == (401, "invalid_setup_token")


# -- every later login (rule S12) ---------------------------------------------------------------


async def test_three_distinct_positions_are_asked_and_only_once(registry):
    account = await add_account(registry)
    asked: set[tuple[int, ...]] = set()
    for _ in range(12):
        first = await password_step(registry.client, account.username, PASSWORD)
        assert first.status_code == 200
        positions = first.json()["positions"]
        assert len(positions) == 3 == len(set(positions))
        assert all(1 <= p <= 12 for p in positions)
        asked.add(tuple(positions))
    assert len(asked) > 1  # chosen at random, not always the same

    first = (await password_step(registry.client, account.username, PASSWORD)).json()
    answer = {"challenge_id": first["challenge_id"], "digits": digits_for(CODE, first["positions"])}
    assert (await registry.client.post("/auth/login/code", json=answer)).status_code == 200
    replayed = await registry.client.post("/auth/login/code", json=answer)
    assert (replayed.status_code, error_code(replayed)) == (401, "invalid_challenge")


async def test_a_wrong_answer_spends_the_challenge_and_other_positions_count_as_wrong(registry):
    account = await add_account(registry)
    first = (await password_step(registry.client, account.username, PASSWORD)).json()
    others = [p for p in range(1, 13) if p not in first["positions"]][:3]
    # The right digits, but at positions the registry did not ask.
    chosen = await registry.client.post(
        "/auth/login/code", json={"challenge_id": first["challenge_id"], "digits": digits_for(CODE, others)}
    )
    assert (chosen.status_code, error_code(chosen)) == (401, "wrong_security_code")
    right_now = await registry.client.post(
        "/auth/login/code",
        json={"challenge_id": first["challenge_id"], "digits": digits_for(CODE, first["positions"])},
    )
    assert (right_now.status_code, error_code(right_now)) == (401, "invalid_challenge")
    assert (await credentials_of(registry, account.user_id)).failed_attempts == 1


async def test_a_login_challenge_expires_after_five_minutes(registry):
    account = await add_account(registry)
    first = (await password_step(registry.client, account.username, PASSWORD)).json()
    registry.clock.travel(timedelta(minutes=5, seconds=1))
    late = await registry.client.post(
        "/auth/login/code",
        json={"challenge_id": first["challenge_id"], "digits": digits_for(CODE, first["positions"])},
    )
    assert (late.status_code, error_code(late)) == (401, "invalid_challenge")


@pytest.mark.parametrize(
    "digits",
    [{"1": "1", "2": "2"}, {"1": "1", "2": "2", "3": "3", "4": "4"}, {"0": "1", "2": "2", "3": "3"}, {"1": "12"}],
)
async def test_malformed_answers_are_refused_without_spending_the_challenge(registry, digits):
    account = await add_account(registry)
    first = (await password_step(registry.client, account.username, PASSWORD)).json()
    bad = await registry.client.post("/auth/login/code", json={"challenge_id": first["challenge_id"], "digits": digits})
    assert (bad.status_code, error_code(bad)) == (422, "invalid_request")
    good = await registry.client.post(
        "/auth/login/code",
        json={"challenge_id": first["challenge_id"], "digits": digits_for(CODE, first["positions"])},
    )
    assert good.status_code == 200


async def test_passwords_are_case_sensitive(registry):
    account = await add_account(registry)
    for variant in (PASSWORD.swapcase(), PASSWORD.lower(), PASSWORD.upper()):
        refused = await password_step(registry.client, account.username, variant)
        assert (refused.status_code, error_code(refused)) == (401, "invalid_credentials")
    assert (await password_step(registry.client, account.username, PASSWORD)).status_code == 200


async def test_a_wrong_user_name_and_a_wrong_password_get_the_same_answer(registry, monkeypatch):
    await add_account(registry, "ana.pop")
    await add_account(registry, "ion.gone", status=UserStatus.deactivated)
    await add_account(registry, "eva.locked", status=UserStatus.locked)
    closed = await add_authority(registry, status=AuthorityStatus.deactivated)
    await add_account(registry, "dan.closed", authority_id=closed)

    verifications: list[bool] = []
    verify = security.verify_password

    def counting(password_hash: str | None, password: str) -> bool:
        verifications.append(password_hash is None)
        return verify(password_hash, password)

    monkeypatch.setattr(security, "verify_password", counting)
    answers = []
    for username, password in (
        ("nobody.here", PASSWORD),  # unknown user name
        ("ana.pop", "Wrong-password-1"),  # wrong password
        ("ion.gone", PASSWORD),  # deactivated user, right password
        ("eva.locked", "Wrong-password-1"),  # locked account, wrong password
        ("dan.closed", PASSWORD),  # deactivated authority, right password
    ):
        response = await password_step(registry.client, username, password)
        answers.append((response.status_code, response.json()))
    assert all(answer == answers[0] for answer in answers)
    assert answers[0] == (
        401,
        {"error": {"code": "invalid_credentials", "message": "the user name or the password is wrong"}},
    )
    # The same work each time: one argon2 verification, against a dummy hash for the unknown name.
    assert verifications == [True, False, False, False, False]


async def test_inputs_are_bounded(registry):
    for body in (
        {"username": "a" * 101, "password": PASSWORD},
        {"username": "ana.pop", "password": "p" * 129},
        {"username": "", "password": PASSWORD},
        {"username": "ana.pop"},
    ):
        response = await registry.client.post("/auth/login", json=body)
        assert (response.status_code, error_code(response)) == (422, "invalid_request")
    too_long = await registry.client.post("/auth/refresh", json={"refresh_token": "r" * 101})
    assert (too_long.status_code, error_code(too_long)) == (422, "invalid_request")


# -- lockout ("Lost credentials") ---------------------------------------------------------------


async def test_five_wrong_attempts_lock_the_account_until_a_reset(registry):
    account = await add_account(registry)
    for attempt in range(1, 6):
        refused = await password_step(registry.client, account.username, f"Wrong-password-{attempt}")
        # Even the fifth says nothing more: only the right password learns of the lock.
        assert (refused.status_code, error_code(refused)) == (401, "invalid_credentials")
        # The count is kept although the request failed.
        assert (await credentials_of(registry, account.user_id)).failed_attempts == attempt
    assert await user_status(registry, account.user_id) == "locked"

    locked = await password_step(registry.client, account.username, PASSWORD)
    assert (locked.status_code, error_code(locked)) == (403, "account_locked")
    still = await password_step(registry.client, account.username, "Wrong-password-6")
    assert (still.status_code, error_code(still)) == (401, "invalid_credentials")
    registry.clock.travel(timedelta(days=30))  # time alone does not unlock
    assert (await password_step(registry.client, account.username, PASSWORD)).status_code == 403

    # A local data administrator's reset (users.reset_password): active again, a temporary password, no code.
    async with registry.runtime.messaging.transaction() as uow:
        user = await uow.session.get(User, account.user_id)
        assert user is not None and user.credentials is not None
        user.status = UserStatus.active
        user.credentials.password_hash = security.hash_password(TEMPORARY)
        user.credentials.password_is_temporary = True
        user.credentials.security_code = None
        user.credentials.failed_attempts = 0
        user.credentials.changed_at = registry.clock.now()
    reset = await password_step(registry.client, account.username, TEMPORARY)
    assert reset.status_code == 200
    assert reset.json()["next"] == "setup"  # with the old user name, and a new security code to choose


async def test_wrong_security_code_digits_count_as_failed_attempts(registry):
    account = await add_account(registry)
    for attempt in range(2):
        await password_step(registry.client, account.username, f"Wrong-password-{attempt}")
    for attempt in range(3, 6):
        first = (await password_step(registry.client, account.username, PASSWORD)).json()
        wrong = await registry.client.post(
            "/auth/login/code",
            json={"challenge_id": first["challenge_id"], "digits": wrong_digits_for(CODE, first["positions"])},
        )
        # Whoever answers the code step knows the password: the lock is told at once.
        expected = (403, "account_locked") if attempt == 5 else (401, "wrong_security_code")
        assert (wrong.status_code, error_code(wrong)) == expected
    assert await user_status(registry, account.user_id) == "locked"


async def test_a_completed_login_resets_the_count_and_a_right_password_alone_does_not(registry):
    account = await add_account(registry)
    for attempt in range(4):
        await password_step(registry.client, account.username, f"Wrong-password-{attempt}")
    # Right password, then abandoning the code step: the count stays.
    assert (await password_step(registry.client, account.username, PASSWORD)).status_code == 200
    assert (await credentials_of(registry, account.user_id)).failed_attempts == 4

    await log_in(registry.client, account)
    assert (await credentials_of(registry, account.user_id)).failed_attempts == 0
    for attempt in range(4):
        await password_step(registry.client, account.username, f"Wrong-password-{attempt}")
    assert await user_status(registry, account.user_id) == "active"
    await log_in(registry.client, account)


async def test_lockout_emits_an_event_for_the_notifier(registry):
    account = await add_account(registry)
    for attempt in range(5):
        await password_step(registry.client, account.username, f"Wrong-password-{attempt}")

    outbox = registry.runtime.definition.tables.outbox
    async with registry.runtime.sessions() as session:
        rows = (await session.execute(select(outbox.c.event_type, outbox.c.payload).order_by(outbox.c.seq))).all()
        audit = (await session.scalars(select(AuditEntry).where(AuditEntry.entity_id == str(account.user_id)))).all()
    locked = [json.loads(row.payload) for row in rows if row.event_type == "registry.user.locked.v1"]
    assert len(locked) == 1
    assert locked[0]["data"] == {"user_id": str(account.user_id), "authority_id": str(account.authority_id)}
    # The state event says the user is locked; no event carries a secret.
    updated = [json.loads(row.payload) for row in rows if row.event_type == "registry.user.updated.v1"]
    assert updated[-1]["data"]["status"] == "locked"
    for row in rows:
        for secret in (PASSWORD, CODE, account.username, "Wrong-password", "argon2"):
            assert secret not in row.payload
    assert [(entry.entity_type, entry.action, entry.actor_user_id) for entry in audit] == [("user", "locked", None)]


async def test_the_security_code_is_never_stored_in_clear(registry):
    account = await add_account(registry, password=TEMPORARY, temporary=True)
    token = (await password_step(registry.client, account.username, TEMPORARY)).json()["setup_token"]
    chosen = await registry.client.post(
        "/auth/setup", json={"setup_token": token, "new_password": NEW_PASSWORD, "security_code": NEW_CODE}
    )
    assert chosen.status_code == 200

    async with registry.runtime.sessions() as session:
        row = (
            (await session.execute(text("SELECT * FROM credentials WHERE user_id = :id"), {"id": account.user_id.hex}))
            .mappings()
            .one()
        )
        challenges = (await session.execute(text("SELECT * FROM login_challenges"))).all()
    stored = " ".join(repr(value) for value in row.values())
    for secret in (NEW_CODE, NEW_PASSWORD, TEMPORARY):
        assert secret not in stored
        assert secret.encode() not in row["security_code"]
    # Encrypted under the registry's key, bound to this user: it opens only for them.
    key = security_code_key(registry.runtime.settings)
    positions = {1: NEW_CODE[0], 6: NEW_CODE[5], 12: NEW_CODE[11]}
    assert security.security_code_matches(key, account.user_id, row["security_code"], positions)
    assert not security.security_code_matches(key, uuid.uuid4(), row["security_code"], positions)
    # Nor is a setup token or challenge id kept in clear: rows are named by a hash of them.
    assert token not in repr(challenges)
