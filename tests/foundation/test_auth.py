"""Services verify the registry's signed access tokens against its JWKS (ARCHITECTURE.md,
Identity and access), and every route declares who may call it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Depends, FastAPI

from shared.auth import InvalidToken, JwksTokenVerifier, Principal, Requires
from shared.clock import FrozenClock
from shared.errors import install_error_handlers

ISSUER, AUDIENCE = "imi-registry", "imi"


class Registry:
    """Stands in for the registry's JWKS endpoint: a real HTTP app whose key set can rotate."""

    def __init__(self) -> None:
        self.keys: dict[str, Ed25519PrivateKey] = {}
        self.fetches = 0
        self.app = FastAPI()

        @self.app.get("/.well-known/jwks.json")
        def jwks() -> dict[str, Any]:
            self.fetches += 1
            return {"keys": [self._public_jwk(kid, key) for kid, key in self.keys.items()]}

    @staticmethod
    def _public_jwk(kid: str, key: Ed25519PrivateKey) -> dict[str, Any]:
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
        return {**jwk, "kid": kid, "use": "sig", "alg": "EdDSA"}

    def add_key(self, kid: str) -> None:
        self.keys[kid] = Ed25519PrivateKey.generate()

    def token(self, kid: str, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "sub": "user-1",
            "authority": "authority-1",
            "country": "RO",
            "language": "ro",
            "roles": {"professional_qualifications": ["request_handler"]},
            "authority_roles": [],
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 300,
            "typ": "access",
            **overrides,
        }
        return jwt.encode(claims, self.keys[kid], algorithm="EdDSA", headers={"kid": kid})

    def verifier(self, **options: Any) -> JwksTokenVerifier:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://registry")
        return JwksTokenVerifier(
            "http://registry/.well-known/jwks.json", issuer=ISSUER, audience=AUDIENCE, client=client, **options
        )


@pytest.fixture
def registry() -> Registry:
    made = Registry()
    made.add_key("key-1")
    return made


async def test_a_valid_token_gives_the_callers_principal(registry):
    principal = await registry.verifier().verify(registry.token("key-1"))
    assert principal.user_id == "user-1"
    assert principal.country == "RO"
    assert principal.has_role("request_handler", "professional_qualifications")
    assert not principal.has_role("request_handler", "services")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": int(time.time()) - 60}, "expired"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": "an-impostor"}, "issuer"),
        ({"typ": "refresh"}, "not an access token"),
    ],
)
async def test_tokens_that_are_expired_or_meant_for_others_are_refused(registry, overrides, reason):
    with pytest.raises(InvalidToken):
        await registry.verifier().verify(registry.token("key-1", **overrides))


async def test_a_token_signed_by_another_key_is_refused(registry):
    forged = jwt.encode(
        {"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "iat": 0, "exp": 2**40, "typ": "access"},
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers={"kid": "key-1"},
    )
    with pytest.raises(InvalidToken):
        await registry.verifier().verify(forged)


async def test_keys_are_cached_and_fetched_again_only_for_an_unknown_key_id(registry):
    verifier = registry.verifier(min_refresh_interval=0)
    await verifier.verify(registry.token("key-1"))
    await verifier.verify(registry.token("key-1"))
    assert registry.fetches == 1

    registry.add_key("key-2")  # the registry rotates its signing key
    await verifier.verify(registry.token("key-2"))
    assert registry.fetches == 2
    await verifier.verify(registry.token("key-1"))  # the old key still verifies its tokens
    assert registry.fetches == 2


async def test_forged_key_ids_cannot_make_the_service_flood_the_registry(registry):
    verifier = registry.verifier(min_refresh_interval=60)
    await verifier.verify(registry.token("key-1"))
    for n in range(5):
        registry.add_key(f"bogus-{n}")
        with pytest.raises(InvalidToken):
            await verifier.verify(registry.token(f"bogus-{n}"))
    assert registry.fetches == 1


def protected_app(registry: Registry) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    class State:
        verifier = registry.verifier()

    app.state.runtime = State()
    router = APIRouter()

    @router.get("/requests")
    async def list_requests(
        principal: Principal = Depends(Requires("request_handler", area_of=lambda r: r.query_params.get("area"))),
    ) -> dict[str, str]:
        return {"user": principal.user_id}

    app.include_router(router)
    return app


async def test_a_route_answers_401_without_a_token_403_without_the_role_and_200_with_it(registry):
    transport = httpx.ASGITransport(app=protected_app(registry))
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        anonymous = await client.get("/requests", params={"area": "professional_qualifications"})
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "not_authenticated"

        bad = await client.get("/requests", headers={"Authorization": "Bearer not-a-token"})
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "invalid_token"

        auth = {"Authorization": f"Bearer {registry.token('key-1')}"}
        other_area = await client.get("/requests", params={"area": "services"}, headers=auth)
        assert other_area.status_code == 403
        assert other_area.json()["error"]["code"] == "forbidden"

        allowed = await client.get("/requests", params={"area": "professional_qualifications"}, headers=auth)
        assert allowed.status_code == 200
        assert allowed.json() == {"user": "user-1"}


async def test_a_token_verified_once_is_remembered_yet_still_expires(registry):
    clock = FrozenClock(datetime.now(UTC))
    verifier = registry.verifier(clock=clock)
    token = registry.token("key-1")  # valid for 300 s
    assert (await verifier.verify(token)).user_id == "user-1"
    assert (await verifier.verify(token)).user_id == "user-1"
    clock.travel(timedelta(seconds=310))  # past its expiry and the 5 s leeway
    with pytest.raises(InvalidToken):
        await verifier.verify(token)


async def test_a_remembered_token_is_refused_once_its_key_left_the_key_set(registry):
    verifier = registry.verifier(min_refresh_interval=0)
    old = registry.token("key-1")
    await verifier.verify(old)
    del registry.keys["key-1"]  # the registry withdraws a key
    registry.add_key("key-2")
    await verifier.verify(registry.token("key-2"))  # fetches the key set again
    with pytest.raises(InvalidToken):
        await verifier.verify(old)
