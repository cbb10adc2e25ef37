"""Who is calling: the registry's signed access tokens, verified locally by every service.

The registry signs short-lived access tokens with an asymmetric key (EdDSA) and publishes the public
keys at ``/.well-known/jwks.json``. Other services fetch that key set once, cache it, and fetch it
again only when a token names a key id they do not know (a rotated key), at most once per
``min_refresh_interval`` so forged key ids cannot turn them into a flood of requests.

Every route declares who may call it with :class:`Requires`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Protocol

import httpx
import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.clock import Clock
from shared.errors import ApiError
from shared.logging import get_logger

log = get_logger(__name__)

ALGORITHMS = ["EdDSA"]


class Principal(BaseModel):
    """The claims of an access token: the user, their authority and what they may do."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    user_id: str = Field(alias="sub")
    authority_id: str = Field(alias="authority")
    country: str
    language: str = "en"
    # Roles per legislative area (rule S9): request_handler, allocator, referral_user, data_administrator.
    roles: dict[str, list[str]] = Field(default_factory=dict)
    # Authority-wide roles: local_data_administrator, commission, translator.
    authority_roles: list[str] = Field(default_factory=list)
    # For users of a coordinator authority: its kind and scope (rule A2).
    coordinator: dict[str, Any] | None = None

    def has_role(self, role: str, area: str | None = None) -> bool:
        if role in self.authority_roles:
            return True
        if area is not None:
            return role in self.roles.get(area, [])
        return any(role in roles for roles in self.roles.values())


class InvalidToken(Exception):
    pass


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Principal: ...


class JwksTokenVerifier:
    """Verifies tokens against the registry's JWKS, fetched over HTTP and cached by key id."""

    def __init__(
        self,
        jwks_url: str,
        *,
        issuer: str,
        audience: str,
        client: httpx.AsyncClient | None = None,
        min_refresh_interval: float = 10.0,
        leeway: float = 5.0,
        clock: Clock | None = None,
        remember: int = 10_000,
    ) -> None:
        self._jwks_url = jwks_url
        self._issuer = issuer
        self._audience = audience
        self._client = client or httpx.AsyncClient(timeout=5.0)
        self._owns_client = client is None
        self._keys: dict[str, Any] = {}
        self._last_fetch = -float("inf")
        self._min_refresh_interval = min_refresh_interval
        self._leeway = leeway
        self._clock = clock
        self._lock = asyncio.Lock()
        # token -> (principal, key id, iat, exp) of tokens whose signature and claims checked out
        self._verified: dict[str, tuple[Principal, str, float, float]] = {}
        self._remember = remember

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._last_fetch < self._min_refresh_interval:
                return
            self._last_fetch = time.monotonic()
            try:
                response = await self._client.get(self._jwks_url)
                response.raise_for_status()
                key_set = jwt.PyJWKSet.from_dict(response.json())
            except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
                log.warning("could not fetch the registry's signing keys", url=self._jwks_url, error=repr(exc))
                return
            self._keys = {key.key_id: key for key in key_set.keys if key.key_id}

    async def _key(self, key_id: str) -> Any:
        if key_id not in self._keys:
            await self._refresh()
        key = self._keys.get(key_id)
        if key is None:
            raise InvalidToken("token signed with an unknown key")
        return key

    async def verify(self, token: str) -> Principal:
        remembered = self._verified.get(token)
        if remembered is not None:
            principal, signed_with, issued, expires = remembered
            if signed_with in self._keys and self._within_lifetime(issued, expires):
                return principal
            del self._verified[token]  # expired, or its key left the key set: verified afresh below
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        key_id = header.get("kid")
        if not isinstance(key_id, str):
            raise InvalidToken("token names no key")
        key = await self._key(key_id)
        now = self._clock.now() if self._clock else None
        claims = decode_access_claims(
            token, key, issuer=self._issuer, audience=self._audience, leeway=self._leeway, now=now
        )
        principal = _principal(claims)
        if len(self._verified) >= self._remember:
            self._verified.clear()  # simpler than an LRU, and a refill costs one verification per token
        self._verified[token] = (principal, key_id, float(claims["iat"]), float(claims["exp"]))
        return principal

    def _within_lifetime(self, issued: float, expires: float) -> bool:
        """The checks :func:`decode_access_claims` makes of ``iat`` and ``exp``, at this moment."""
        moment = self._clock.now().timestamp() if self._clock else time.time()
        return expires > moment - self._leeway and issued <= moment + self._leeway


def decode_access_token(
    token: str, key: Any, *, issuer: str, audience: str, leeway: float = 5.0, now: datetime | None = None
) -> Principal:
    """Check signature, expiry (against ``now``, the service's clock, when given), issuer, audience
    and token type; return the principal."""
    return _principal(decode_access_claims(token, key, issuer=issuer, audience=audience, leeway=leeway, now=now))


def decode_access_claims(
    token: str, key: Any, *, issuer: str, audience: str, leeway: float = 5.0, now: datetime | None = None
) -> dict[str, Any]:
    """The claims of a token that passes the checks of :func:`decode_access_token`."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=ALGORITHMS,
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={
                "require": ["exp", "iat", "sub", "iss", "aud"],
                "verify_exp": now is None,
                "verify_iat": now is None,
                "verify_nbf": now is None,
            },
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    if now is not None:
        moment = now.timestamp()
        if float(claims["exp"]) <= moment - leeway:
            raise InvalidToken("the token has expired")
        if float(claims["iat"]) > moment + leeway:
            raise InvalidToken("the token is not yet valid")
    if claims.get("typ") != "access":
        raise InvalidToken("not an access token")
    return claims


def _principal(claims: dict[str, Any]) -> Principal:
    try:
        return Principal.model_validate(claims)
    except ValidationError as exc:
        raise InvalidToken("token claims are incomplete") from exc


_bearer = HTTPBearer(auto_error=False)


async def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None:
        raise ApiError(401, "not_authenticated", "an access token is required")
    verifier: TokenVerifier = request.app.state.runtime.verifier
    try:
        return await verifier.verify(credentials.credentials)
    except InvalidToken as exc:
        raise ApiError(401, "invalid_token", f"the access token was refused: {exc}") from exc


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


class Requires:
    """A route's permission: the caller must hold one of ``roles`` (per area when ``area_of`` is given).

    ``Depends(Requires("request_handler"))`` on a route makes the rule visible where the route is.
    """

    def __init__(self, *roles: str, area_of: Callable[[Request], str | None] | None = None) -> None:
        if not roles:
            raise ValueError("Requires needs at least one role")
        self.roles = roles
        self.area_of = area_of

    async def __call__(self, request: Request, principal: CurrentPrincipal) -> Principal:
        area = self.area_of(request) if self.area_of else None
        if any(principal.has_role(role, area) for role in self.roles):
            return principal
        raise ApiError(403, "forbidden", f"this action needs the role {' or '.join(self.roles)}")
