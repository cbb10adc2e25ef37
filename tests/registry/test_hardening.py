"""Hardening of the login (issue 9): what an attacker at the login can learn and how fast they may
guess, the life of tokens, and rotating the signing key without downtime.

Covered elsewhere, not repeated here:
- five failures in a row lock the account until a reset:
  tests/registry/test_login.py::test_five_wrong_attempts_lock_the_account_until_a_reset (and
  ::test_wrong_security_code_digits_count_as_failed_attempts for the code step);
- an unknown, deactivated or locked user name gets the same message and status as a wrong password:
  tests/registry/test_login.py::test_a_wrong_user_name_and_a_wrong_password_get_the_same_answer;
- access tokens expire in the registry after 15 minutes: tests/registry/test_tokens.py::
  test_expired_access_tokens_are_refused; refresh tokens after 30 days, logout revokes the family,
  reuse of a rotated refresh token revokes the family: tests/registry/test_tokens.py.
Here: the whole answer (headers, body length) and the argon2 work, the rate limits
(services/registry/rate_limits.py), expiry as other services see it, revocation on logout and on
a password reset, reuse long after the rotation, and a key rotation across two deployments.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from services import create_app, load_definition
from services.registry import security
from services.registry.models import Role
from services.registry.rate_limits import (
    ACCOUNT_LIMIT,
    ADDRESS_LIMIT,
    Limit,
    LoginLimits,
    SlidingWindow,
    TooManyAttempts,
    account_key,
)
from services.registry.tokens import key_id
from shared.auth import JwksTokenVerifier
from shared.bus.memory import MemoryBroker, MemoryTransport
from shared.clock import FrozenClock
from shared.migrations import upgrade
from shared.settings import Settings
from tests.registry.conftest import RegistryUnderTest
from tests.registry.test_login import (
    CODE,
    NEW_CODE,
    NEW_PASSWORD,
    PASSWORD,
    TEMPORARY,
    Account,
    add_account,
    add_authority,
    credentials_of,
    digits_for,
    error_code,
    log_in,
    password_step,
)

WINDOW = ACCOUNT_LIMIT.window
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def client_at(app: FastAPI, address: str) -> httpx.AsyncClient:
    """A client whose requests come from ``address`` (the ASGI peer the registry sees)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://registry")


def comparable(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    """Everything a caller sees, but the correlation id (new for every request, whatever it asks)."""
    headers = dict(response.headers)
    assert len(headers.pop("x-correlation-id")) == 36
    return response.status_code, headers, response.content


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every argon2 verification the login makes: True when it is against the dummy hash."""
    calls: list[bool] = []
    verify = security.verify_password

    def counting(password_hash: str | None, password: str) -> bool:
        calls.append(password_hash is None)
        return verify(password_hash, password)

    monkeypatch.setattr(security, "verify_password", counting)
    return calls


# -- nothing tells a wrong user name from a wrong password ----------------------------------------


async def test_a_wrong_user_name_and_a_wrong_password_look_the_same_to_the_byte(registry, argon2_calls):
    await add_account(registry, "ana.pop")
    unknown = await password_step(registry.client, "ana.pop.nobody", "Wrong-password-1")
    wrong = await password_step(registry.client, "ana.pop", "Wrong-password-1")

    assert comparable(unknown) == comparable(wrong)
    assert unknown.headers["content-length"] == wrong.headers["content-length"] == str(len(wrong.content))
    assert (wrong.status_code, error_code(wrong)) == (401, "invalid_credentials")
    # The same work: one argon2 verification each (against a dummy hash for the unknown name).
    assert argon2_calls == [True, False]


async def test_beyond_the_limit_a_known_and_an_unknown_account_get_the_same_429(registry, argon2_calls):
    await add_account(registry, "ana.pop")
    for attempt in range(ACCOUNT_LIMIT.attempts):
        for username in ("ana.pop", "ana.pop.nobody"):
            refused = await password_step(registry.client, username, f"Wrong-password-{attempt}")
            assert (refused.status_code, error_code(refused)) == (401, "invalid_credentials")
    argon2_calls.clear()

    known = await password_step(registry.client, "ana.pop", PASSWORD)  # even the right password
    unknown = await password_step(registry.client, "ana.pop.nobody", PASSWORD)
    assert comparable(known) == comparable(unknown)
    assert known.status_code == 429
    assert known.json() == {
        "error": {"code": "too_many_attempts", "message": "too many login attempts; try again in 60 seconds"}
    }
    assert known.headers["retry-after"] == "60"
    assert argon2_calls == []  # refused before any work


# -- rate limits ---------------------------------------------------------------------------------


async def test_an_account_gets_ten_refused_attempts_a_minute_then_429_until_the_window_moves(registry):
    account = await add_account(registry)
    for attempt in range(ACCOUNT_LIMIT.attempts):
        refused = await password_step(registry.client, account.username, f"Wrong-password-{attempt}")
        assert refused.status_code == 401
        registry.clock.travel(timedelta(seconds=1))  # ten attempts over ten seconds
    limited = await password_step(registry.client, account.username, "Wrong-password-x")
    assert (limited.status_code, error_code(limited)) == (429, "too_many_attempts")
    assert limited.headers["retry-after"] == "50"  # when the oldest attempt leaves the window
    # Nothing was counted for the refused request: the account's failures stay at five (locked).
    assert (await credentials_of(registry, account.user_id)).failed_attempts == 5

    # From another address, the same account is limited all the same (its budget, not the address's).
    async with client_at(registry.app, "198.51.100.20") as elsewhere:
        assert (await password_step(elsewhere, account.username, PASSWORD)).status_code == 429
    # Other accounts from the same address are not.
    other = await add_account(registry, "ion.rus")
    assert (await password_step(registry.client, other.username, PASSWORD)).status_code == 200

    registry.clock.travel(timedelta(seconds=49))
    assert (await password_step(registry.client, account.username, PASSWORD)).headers["retry-after"] == "1"
    registry.clock.travel(timedelta(seconds=1))
    # One attempt has left the window: one more may be tried (it learns of the lock: the password is right).
    again = await password_step(registry.client, account.username, PASSWORD)
    assert (again.status_code, error_code(again)) == (403, "account_locked")
    assert (await password_step(registry.client, account.username, PASSWORD)).status_code == 429


async def test_user_names_differing_in_case_or_form_share_one_budget(registry):
    assert account_key("Ana.Pop") == account_key("ana.pop") == account_key("ＡＮＡ.ＰＯＰ")
    for attempt in range(ACCOUNT_LIMIT.attempts):
        await password_step(registry.client, ("ana.pop", "ANA.POP")[attempt % 2], "Wrong-password-1")
    assert (await password_step(registry.client, "Ana.Pop", "Wrong-password-1")).status_code == 429


async def test_an_address_gets_thirty_refused_attempts_a_minute_across_accounts(registry):
    spraying = client_at(registry.app, "203.0.113.7")
    async with spraying, client_at(registry.app, "198.51.100.20") as elsewhere:
        for n in range(ADDRESS_LIMIT.attempts):  # one guess on each of thirty user names
            refused = await password_step(spraying, f"user.{n}", "Spring-2026-guess")
            assert refused.status_code == 401
        fresh_name = await password_step(spraying, "user.fresh", "Spring-2026-guess")
        assert (fresh_name.status_code, error_code(fresh_name)) == (429, "too_many_attempts")
        assert fresh_name.headers["retry-after"] == "60"
        # Even a right password from that address waits; another address does not.
        account = await add_account(registry)
        assert (await password_step(spraying, account.username, PASSWORD)).status_code == 429
        assert (await password_step(elsewhere, "user.fresh", "Spring-2026-guess")).status_code == 401
        registry.clock.travel(WINDOW)
        assert (await password_step(spraying, account.username, PASSWORD)).status_code == 200


async def test_successful_steps_give_their_attempt_back(registry):
    """Only refusals use the budgets up: colleagues behind one address log in all day."""
    accounts = [await add_account(registry, f"colleague.{n}") for n in range(4)]
    for _ in range(5):  # 40 requests from one address within the same minute, all successful
        for account in accounts:
            await log_in(registry.client, account)
    assert (await password_step(registry.client, accounts[0].username, PASSWORD)).status_code == 200


async def test_the_code_step_counts_against_the_account_of_its_challenge(registry):
    account = await add_account(registry)
    asked = (await password_step(registry.client, account.username, PASSWORD)).json()
    for attempt in range(ACCOUNT_LIMIT.attempts):  # the fifth locks the account; all ten count
        await password_step(registry.client, account.username, f"Wrong-password-{attempt}")
    answer = {"challenge_id": asked["challenge_id"], "digits": digits_for(CODE, asked["positions"])}

    limited = await registry.client.post("/auth/login/code", json=answer)
    assert (limited.status_code, error_code(limited)) == (429, "too_many_attempts")
    # The 429 changed nothing: the challenge is not spent, and is answered once the window moved.
    registry.clock.travel(WINDOW)
    later = await registry.client.post("/auth/login/code", json=answer)
    assert (later.status_code, error_code(later)) == (403, "account_locked")

    # An unknown challenge names no account: only the address counts it.
    unknown = await registry.client.post("/auth/login/code", json={**answer, "challenge_id": "x" * 43})
    assert (unknown.status_code, error_code(unknown)) == (401, "invalid_challenge")


async def test_the_setup_step_counts_against_the_account_of_its_token(registry):
    account = await add_account(registry, password=TEMPORARY, temporary=True)
    token = (await password_step(registry.client, account.username, TEMPORARY)).json()["setup_token"]
    for _ in range(ACCOUNT_LIMIT.attempts):
        weak = await registry.client.post(
            "/auth/setup", json={"setup_token": token, "new_password": "weak", "security_code": NEW_CODE}
        )
        assert (weak.status_code, error_code(weak)) == (422, "weak_password")
    good = {"setup_token": token, "new_password": NEW_PASSWORD, "security_code": NEW_CODE}
    limited = await registry.client.post("/auth/setup", json=good)
    assert (limited.status_code, error_code(limited)) == (429, "too_many_attempts")
    assert (await credentials_of(registry, account.user_id)).password_is_temporary is True

    registry.clock.travel(WINDOW)
    chosen = await registry.client.post("/auth/setup", json=good)
    assert chosen.status_code == 200, chosen.text


async def test_the_limits_are_documented_with_retry_after(registry):
    document = registry.app.openapi()
    for path in ("/auth/login", "/auth/login/code", "/auth/setup"):
        answer = document["paths"][path]["post"]["responses"]["429"]
        assert "too_many_attempts" in answer["description"]
        assert "Retry-After" in answer["headers"]


def test_a_sliding_window_counts_attempts_within_any_window_and_forgets_the_least_recent_key():
    clock = FrozenClock()
    window = SlidingWindow(Limit(attempts=3, window=timedelta(seconds=10)), clock, max_keys=2)
    for _ in range(3):
        window.take("a")
        clock.travel(timedelta(seconds=4))  # attempts at 0, 4 and 8 s; now 12 s
    window.take("a")  # the one at 0 s has left the window
    with pytest.raises(TooManyAttempts) as refused:
        window.take("a")
    assert refused.value.retry_after == 2  # now 12 s; the attempt at 4 s leaves at 14 s
    given = window.take("b")
    window.give_back(given)  # given back: "b" has three attempts still
    for _ in range(3):
        window.take("b")
    with pytest.raises(TooManyAttempts):
        window.take("a")  # refused: "a" is not used, "b" stays the key used last
    window.take("c")  # a third key: the key used longest ago ("a") is forgotten, "b" is kept
    assert len(window) == 2
    with pytest.raises(TooManyAttempts):
        window.take("b")
    window.take("a")  # "a" starts afresh


def test_the_budgets_of_one_registry_are_its_own():
    """Per process: each replica counts on its own (documented in services/registry/rate_limits.py)."""
    clock = FrozenClock()
    first, second = LoginLimits(clock), LoginLimits(clock)
    for _ in range(ACCOUNT_LIMIT.attempts):
        with first.attempt("192.0.2.1", "ana.pop"):
            pass
    with pytest.raises(TooManyAttempts), first.attempt("192.0.2.1", "ana.pop"):
        pass
    with second.attempt("192.0.2.1", "ana.pop"):
        pass


# -- tokens --------------------------------------------------------------------------------------


class Switchable(httpx.AsyncBaseTransport):
    """One registry address whose deployment can be replaced (a rolling update, in one step)."""

    def __init__(self, app: FastAPI) -> None:
        self.serve(app)

    def serve(self, app: FastAPI) -> None:
        self.transport = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.transport.handle_async_request(request)


@asynccontextmanager
async def exchange_verifying_with(
    settings: Settings, registry_transport: httpx.AsyncBaseTransport, clock: FrozenClock
) -> AsyncIterator[httpx.AsyncClient]:
    """An exchange that reads tokens as deployed: a JwksTokenVerifier on the registry's JWKS."""
    await upgrade(load_definition("exchange").migrations, settings.database_url("exchange"))
    async with httpx.AsyncClient(transport=registry_transport, base_url="http://registry") as to_registry:
        verifier = JwksTokenVerifier(
            "http://registry/.well-known/jwks.json",
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            client=to_registry,
            min_refresh_interval=0,
            clock=clock,
        )
        app = create_app(
            "exchange", settings, clock=clock, transport=MemoryTransport(MemoryBroker()), verifier=verifier
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://exchange") as client:
                yield client


@asynccontextmanager
async def running_registry(settings: Settings, clock: FrozenClock) -> AsyncIterator[RegistryUnderTest]:
    """A registry deployment on ``settings`` (its database migrated), on the given clock."""
    await upgrade(load_definition("registry").migrations, settings.database_url("registry"))
    broker = MemoryBroker()
    app = create_app("registry", settings, clock=clock, transport=MemoryTransport(broker))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
            yield RegistryUnderTest(app, client, clock, broker)


async def test_access_tokens_expire_in_the_services_that_verify_them(registry, tmp_path):
    account = await add_account(registry)
    tokens = await log_in(registry.client, account)
    settings = Settings(data_dir=tmp_path / "exchange")
    async with exchange_verifying_with(settings, httpx.ASGITransport(app=registry.app), registry.clock) as exchange:
        assert (await exchange.get("/question-sets", headers=bearer(tokens))).status_code == 200
        registry.clock.travel(timedelta(minutes=15, seconds=6))  # past 15 minutes and the leeway
        expired = await exchange.get("/question-sets", headers=bearer(tokens))
        assert (expired.status_code, error_code(expired)) == (401, "invalid_token")
        # A refresh gives a new access token that the exchange takes again.
        renewed = await registry.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert (await exchange.get("/question-sets", headers=bearer(renewed.json()))).status_code == 200


async def refresh(registry: RegistryUnderTest, token: str) -> httpx.Response:
    return await registry.client.post("/auth/refresh", json={"refresh_token": token})


async def test_logout_ends_that_login_only_and_its_token_cannot_come_back(registry):
    account = await add_account(registry)
    laptop = await log_in(registry.client, account)
    phone = await log_in(registry.client, account)
    assert (
        await registry.client.post("/auth/logout", json={"refresh_token": laptop["refresh_token"]})
    ).status_code == 204
    for _ in range(2):  # refused, and refused again (no second chance through reuse)
        refused = await refresh(registry, laptop["refresh_token"])
        assert (refused.status_code, error_code(refused)) == (401, "invalid_refresh_token")
    assert (await refresh(registry, phone["refresh_token"])).status_code == 200
    # The access token stays valid until it expires (15 minutes at most; login.revoke_user_sessions).
    assert (await registry.client.get("/auth/me", headers=bearer(laptop))).status_code == 200


async def test_a_password_reset_revokes_every_refresh_token_of_the_user(registry):
    authority_id = await add_authority(registry)
    admin = await add_account(
        registry, "lda.admin", roles=((Role.local_data_administrator, None),), authority_id=authority_id
    )
    account = await add_account(registry, "ana.pop", authority_id=authority_id)
    sessions = [await log_in(registry.client, account) for _ in range(2)]
    rotated = (await refresh(registry, sessions[1]["refresh_token"])).json()

    admin_tokens = await log_in(registry.client, admin)
    reset = await registry.client.post(f"/users/{account.user_id}/password-reset", headers=bearer(admin_tokens))
    assert reset.status_code == 204, reset.text

    for token in (sessions[0]["refresh_token"], rotated["refresh_token"]):
        refused = await refresh(registry, token)
        assert (refused.status_code, error_code(refused)) == (401, "invalid_refresh_token")
    old_password = await password_step(registry.client, account.username, PASSWORD)
    assert (old_password.status_code, error_code(old_password)) == (401, "invalid_credentials")
    # The administrator's own session is untouched.
    assert (await refresh(registry, admin_tokens["refresh_token"])).status_code == 200


async def test_reusing_a_refresh_token_generations_later_revokes_the_family(registry):
    account = await add_account(registry)
    stolen = await log_in(registry.client, account)
    current = stolen
    for _ in range(3):  # the user refreshes three times; the thief kept the first token
        current = (await refresh(registry, current["refresh_token"])).json()
    reused = await refresh(registry, stolen["refresh_token"])
    assert (reused.status_code, error_code(reused)) == (401, "invalid_refresh_token")
    latest = await refresh(registry, current["refresh_token"])
    assert (latest.status_code, error_code(latest)) == (401, "invalid_refresh_token")
    # The user logs in again: a new family, unaffected.
    assert (await refresh(registry, (await log_in(registry.client, account))["refresh_token"])).status_code == 200


def pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


async def test_rotating_the_signing_key_keeps_every_token_valid(tmp_path):
    """The registry is redeployed with a new key and the old public key in
    IMI_ADDITIONAL_SIGNING_PUBLIC_KEYS: tokens signed before keep working in the registry and in
    the services (which fetch the key set again for the new key id), new ones use the new key, and
    the JWKS lists both."""
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    old_kid, new_kid = key_id(old.public_key()), key_id(new.public_key())
    before = Settings(data_dir=tmp_path, signing_key=pem(old), outbox_poll_interval=0.1)
    after = Settings(
        data_dir=tmp_path,
        signing_key=pem(new),
        # One-line form with \n escapes, as secret stores hold it.
        additional_signing_public_keys=public_pem(old).replace("\n", "\\n"),
        outbox_poll_interval=0.1,
    )
    clock = FrozenClock(START)
    async with running_registry(before, clock) as first:
        account: Account = await add_account(first)
        signed_before = await log_in(first.client, account)
        assert jwt.get_unverified_header(signed_before["access_token"])["kid"] == old_kid
        registry_address = Switchable(first.app)
        async with exchange_verifying_with(Settings(data_dir=tmp_path), registry_address, clock) as exchange:
            # The exchange has fetched and cached the old key set.
            assert (await exchange.get("/question-sets", headers=bearer(signed_before))).status_code == 200

            # The new deployment starts on the same database while the old one still serves.
            async with running_registry(after, clock) as second:
                registry_address.serve(second.app)
                keys = (await second.client.get("/.well-known/jwks.json")).json()["keys"]
                assert [key["kid"] for key in keys] == [new_kid, old_kid]
                assert (await second.client.get("/auth/me", headers=bearer(signed_before))).status_code == 200

                signed_after = await log_in(second.client, account)
                assert jwt.get_unverified_header(signed_after["access_token"])["kid"] == new_kid
                for tokens in (signed_before, signed_after):
                    assert (await exchange.get("/question-sets", headers=bearer(tokens))).status_code == 200
                # A refresh token issued before the rotation gives a token signed with the new key.
                renewed = await refresh(second, signed_before["refresh_token"])
                assert jwt.get_unverified_header(renewed.json()["access_token"])["kid"] == new_kid
                # A new service replica, fetching the key set for the first time, takes both.
                async with exchange_verifying_with(
                    Settings(data_dir=tmp_path / "replica"), registry_address, clock
                ) as replica:
                    for tokens in (signed_before, signed_after):
                        assert (await replica.get("/question-sets", headers=bearer(tokens))).status_code == 200
