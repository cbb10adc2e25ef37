"""The registry's tokens (ARCHITECTURE.md, Identity and access): short-lived EdDSA access tokens
that other services verify against the published JWKS, and rotating refresh tokens whose reuse
revokes their family."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select, text, update

from services.registry.models import Authority, AuthorityKind, RefreshToken, Role, User, UserRole, UserStatus
from services.registry.tokens import (
    LocalTokenVerifier,
    access_claims,
    issue_access_token,
    jwks,
    key_id,
)
from shared.auth import InvalidToken, JwksTokenVerifier
from shared.keys import signing_key
from shared.settings import Settings
from tests.registry.conftest import RegistryUnderTest
from tests.registry.test_login import PQ, add_account, add_authority, error_code, log_in

registry_verifier = LocalTokenVerifier  # the conftest's registry reads tokens with the registry's own key


@pytest.fixture
def registry(registry: RegistryUnderTest) -> RegistryUnderTest:
    """The conftest's registry, whose token verifier reads the same (frozen) clock as the registry."""
    verifier = registry.runtime.verifier
    assert isinstance(verifier, LocalTokenVerifier)
    verifier.clock = registry.clock
    return registry


def bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


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


# -- keys ---------------------------------------------------------------------------------------


def test_the_key_id_is_the_rfc_7638_thumbprint():
    # RFC 8037, appendix A.2 and A.3: this Ed25519 public key has this JWK thumbprint.
    x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    public_key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "="))
    assert key_id(public_key) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


async def test_the_jwks_publishes_the_public_signing_key_and_nothing_private(registry):
    response = await registry.client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    (key,) = response.json()["keys"]
    public_key = signing_key(registry.runtime.settings).public_key()
    assert key == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": jwt.algorithms.OKPAlgorithm.to_jwk(public_key, as_dict=True)["x"],
        "use": "sig",
        "alg": "EdDSA",
        "kid": key_id(public_key),
    }


class RotatingSettings(Settings):
    """Settings with the proposed IMI_ADDITIONAL_SIGNING_PUBLIC_KEYS (see services/registry/tokens.py)."""

    additional_signing_public_keys: str | None = None


async def test_after_a_rotation_the_previous_key_stays_published_and_valid(tmp_path):
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    before = Settings(data_dir=tmp_path, signing_key=pem(old))
    # One-line form with \n escapes, as secret stores hold it.
    after = RotatingSettings(
        data_dir=tmp_path, signing_key=pem(new), additional_signing_public_keys=public_pem(old).replace("\n", "\\n")
    )
    assert [k["kid"] for k in jwks(after)["keys"]] == [key_id(new.public_key()), key_id(old.public_key())]
    assert all(set(k) == {"kty", "crv", "x", "use", "alg", "kid"} for k in jwks(after)["keys"])  # no "d"

    authority = Authority(id=uuid.uuid4(), kind=AuthorityKind.competent_authority, country="RO", region=None)
    user = User(id=uuid.uuid4(), authority_id=authority.id, language="ro", roles=[])
    now = datetime.now(UTC)
    signed_before = issue_access_token(before, user, authority, now)
    principal = await LocalTokenVerifier(after).verify(signed_before)
    assert principal.user_id == str(user.id)
    with pytest.raises(InvalidToken):  # once the old key is dropped, its tokens are refused
        await LocalTokenVerifier(Settings(data_dir=tmp_path, signing_key=pem(new))).verify(signed_before)


# -- access tokens ------------------------------------------------------------------------------


def test_access_tokens_carry_roles_per_area_and_the_coordinator_scope_rule_s9():
    coordinator = Authority(
        id=uuid.uuid4(),
        kind=AuthorityKind.delegated_coordinator,
        country="RO",
        region="Cluj",
        coordinator_area=PQ,
    )
    user = User(
        id=uuid.uuid4(),
        authority_id=coordinator.id,
        language="ro",
        roles=[
            UserRole(role=Role.local_data_administrator, area=None),
            UserRole(role=Role.request_handler, area=PQ),
            UserRole(role=Role.data_administrator, area=PQ),
            UserRole(role=Role.allocator, area="services"),
        ],
    )
    assert access_claims(user, coordinator) == {
        "sub": str(user.id),
        "authority": str(coordinator.id),
        "country": "RO",
        "language": "ro",
        "roles": {PQ: ["data_administrator", "request_handler"], "services": ["allocator"]},
        "authority_roles": ["coordinator", "local_data_administrator"],
        "coordinator": {"kind": "delegated_coordinator", "area": PQ, "region": "Cluj"},
    }

    commission = Authority(id=uuid.uuid4(), kind=AuthorityKind.commission, country="BE", region=None)
    translator = User(
        id=uuid.uuid4(), authority_id=commission.id, language="en", roles=[UserRole(role=Role.translator, area=None)]
    )
    claims = access_claims(translator, commission)
    assert claims["authority_roles"] == ["commission", "coordinator", "translator"]
    assert claims["roles"] == {}


async def test_an_access_token_verifies_against_the_published_jwks(registry):
    # Other services check times against the wall clock: log in at the wall clock's time.
    registry.clock.travel(datetime.now(UTC) - registry.clock.now())
    account = await add_account(registry)
    tokens = await log_in(registry.client, account)

    transport = httpx.ASGITransport(app=registry.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
        settings = registry.runtime.settings
        verifier = JwksTokenVerifier(
            "http://registry/.well-known/jwks.json",
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            client=client,
        )
        principal = await verifier.verify(tokens["access_token"])
    assert principal.user_id == str(account.user_id)
    assert principal.authority_id == str(account.authority_id)
    assert principal.country == "RO"
    assert principal.has_role("request_handler", PQ)
    assert not principal.has_role("request_handler", "services")
    assert principal.has_role("local_data_administrator")

    header = jwt.get_unverified_header(tokens["access_token"])
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert header["alg"] == "EdDSA"
    assert header["kid"] == key_id(signing_key(settings).public_key())
    assert claims["typ"] == "access"
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert claims["iss"] == settings.token_issuer and claims["aud"] == settings.token_audience
    assert claims["jti"]


async def test_the_caller_reads_who_they_are(registry):
    account = await add_account(registry)
    tokens = await log_in(registry.client, account)
    me = await registry.client.get("/auth/me", headers=bearer(tokens))
    assert me.status_code == 200
    assert me.json() == {
        "user_id": str(account.user_id),
        "authority_id": str(account.authority_id),
        "country": "RO",
        "language": "ro",
        "roles": {PQ: ["request_handler"]},
        "authority_roles": ["local_data_administrator"],
        "coordinator": None,
    }


async def test_expired_access_tokens_are_refused(registry):
    account = await add_account(registry)
    tokens = await log_in(registry.client, account)
    registry.clock.travel(timedelta(minutes=14, seconds=59))
    assert (await registry.client.get("/auth/me", headers=bearer(tokens))).status_code == 200
    registry.clock.travel(timedelta(seconds=7))  # past 15 minutes and the 5-second leeway
    expired = await registry.client.get("/auth/me", headers=bearer(tokens))
    assert (expired.status_code, error_code(expired)) == (401, "invalid_token")


async def test_missing_forged_or_foreign_tokens_are_refused(registry):
    anonymous = await registry.client.get("/auth/me")
    assert (anonymous.status_code, error_code(anonymous)) == (401, "not_authenticated")

    account = await add_account(registry)
    tokens = await log_in(registry.client, account)
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    header = jwt.get_unverified_header(tokens["access_token"])
    forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": header["kid"]})
    unknown_key = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "other"})
    private = signing_key(registry.runtime.settings)
    foreign = jwt.encode({**claims, "aud": "elsewhere"}, private, algorithm="EdDSA", headers={"kid": header["kid"]})
    not_access = jwt.encode({**claims, "typ": "refresh"}, private, algorithm="EdDSA", headers={"kid": header["kid"]})
    for token in ("not-a-token", forged, unknown_key, foreign, not_access):
        refused = await registry.client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert (refused.status_code, error_code(refused)) == (401, "invalid_token")


# -- refresh tokens -----------------------------------------------------------------------------


async def refresh(registry: RegistryUnderTest, token: str) -> httpx.Response:
    return await registry.client.post("/auth/refresh", json={"refresh_token": token})


async def test_a_refresh_token_is_used_once_and_gives_a_new_pair(registry):
    account = await add_account(registry)
    first = await log_in(registry.client, account)
    second = await refresh(registry, first["refresh_token"])
    assert second.status_code == 200
    assert second.headers["cache-control"] == "no-store"
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert (await registry.client.get("/auth/me", headers=bearer(pair))).status_code == 200
    third = await refresh(registry, pair["refresh_token"])
    assert third.status_code == 200


async def test_reusing_a_rotated_refresh_token_revokes_the_family(registry):
    account = await add_account(registry)
    stolen = await log_in(registry.client, account)
    other_login = await log_in(registry.client, account)  # another device: another family
    current = (await refresh(registry, stolen["refresh_token"])).json()

    reused = await refresh(registry, stolen["refresh_token"])
    assert (reused.status_code, error_code(reused)) == (401, "invalid_refresh_token")
    # The whole family is revoked, the latest token too; the other login is untouched.
    latest = await refresh(registry, current["refresh_token"])
    assert (latest.status_code, error_code(latest)) == (401, "invalid_refresh_token")
    assert (await refresh(registry, other_login["refresh_token"])).status_code == 200


async def test_refresh_tokens_are_stored_only_as_hashes(registry):
    account = await add_account(registry)
    tokens = await log_in(registry.client, account)
    async with registry.runtime.sessions() as session:
        rows = (await session.execute(text("SELECT * FROM refresh_tokens"))).mappings().all()
    assert len(rows) == 1
    assert tokens["refresh_token"] not in repr(rows)
    assert rows[0]["token_hash"] == hashlib.sha256(tokens["refresh_token"].encode()).hexdigest()


async def test_logout_revokes_the_family(registry):
    account = await add_account(registry)
    first = await log_in(registry.client, account)
    second = (await refresh(registry, first["refresh_token"])).json()
    out = await registry.client.post("/auth/logout", json={"refresh_token": first["refresh_token"]})
    assert out.status_code == 204
    assert out.content == b""
    after = await refresh(registry, second["refresh_token"])
    assert (after.status_code, error_code(after)) == (401, "invalid_refresh_token")
    # Logging out with an unknown or spent token still succeeds and says nothing.
    assert (await registry.client.post("/auth/logout", json={"refresh_token": "x" * 43})).status_code == 204


async def test_refresh_tokens_expire_after_thirty_days(registry):
    account = await add_account(registry)
    tokens = await log_in(registry.client, account)
    registry.clock.travel(timedelta(days=29, hours=23))
    renewed = await refresh(registry, tokens["refresh_token"])
    assert renewed.status_code == 200  # each use starts a new thirty days
    registry.clock.travel(timedelta(days=30, seconds=1))
    expired = await refresh(registry, renewed.json()["refresh_token"])
    assert (expired.status_code, error_code(expired)) == (401, "invalid_refresh_token")


@pytest.mark.parametrize("status", [UserStatus.locked, UserStatus.deactivated])
async def test_a_locked_or_deactivated_user_cannot_refresh(registry, status):
    account = await add_account(registry)
    tokens = await log_in(registry.client, account)
    async with registry.runtime.messaging.transaction() as uow:
        await uow.session.execute(update(User).where(User.id == account.user_id).values(status=status))
    refused = await refresh(registry, tokens["refresh_token"])
    assert (refused.status_code, error_code(refused)) == (401, "invalid_refresh_token")
    async with registry.runtime.sessions() as session:
        revoked = await session.scalar(select(RefreshToken.revoked_at).where(RefreshToken.user_id == account.user_id))
    assert revoked is not None


async def test_locking_an_account_revokes_its_refresh_tokens(registry):
    account = await add_account(registry)
    tokens = await log_in(registry.client, account)
    for attempt in range(5):
        await registry.client.post(
            "/auth/login", json={"username": account.username, "password": f"Wrong-password-{attempt}"}
        )
    # Even once an administrator unlocks the account, the old session does not come back.
    async with registry.runtime.messaging.transaction() as uow:
        await uow.session.execute(update(User).where(User.id == account.user_id).values(status=UserStatus.active))
    refused = await refresh(registry, tokens["refresh_token"])
    assert (refused.status_code, error_code(refused)) == (401, "invalid_refresh_token")


async def test_a_coordinators_token_names_its_scope(registry):
    authority_id = await add_authority(registry, kind=AuthorityKind.national_coordinator, region=None)
    account = await add_account(
        registry,
        authority_id=authority_id,
        roles=((Role.data_administrator, PQ), (Role.local_data_administrator, None)),
    )
    tokens = await log_in(registry.client, account)
    me = (await registry.client.get("/auth/me", headers=bearer(tokens))).json()
    assert me["coordinator"] == {"kind": "national_coordinator", "area": None, "region": None}
    assert me["authority_roles"] == ["coordinator", "local_data_administrator"]
    assert me["roles"] == {PQ: ["data_administrator"]}
