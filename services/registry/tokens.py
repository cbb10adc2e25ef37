"""The registry's signed access tokens and the key set that verifies them (ARCHITECTURE.md, Identity
and access).

Access tokens are short-lived EdDSA (Ed25519) JWTs whose claims are exactly what
:class:`shared.auth.Principal` reads. The key id is the key's RFC 7638 JWK thumbprint, so it changes
with the key and needs no bookkeeping. ``/.well-known/jwks.json`` publishes the current public key
and any additional public keys (``IMI_ADDITIONAL_SIGNING_PUBLIC_KEYS``): during a rotation the
previous key stays published for at least one access-token lifetime, so tokens it signed keep
verifying in services that refetch the key set for the new key id.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from services.registry.models import Authority, AuthorityKind, Role, User
from shared.auth import InvalidToken, Principal, decode_access_token
from shared.clock import Clock, SystemClock
from shared.keys import signing_key
from shared.settings import Settings

ALGORITHM = "EdDSA"
ACCESS_TOKEN_TTL = timedelta(minutes=15)
# IMI_ADDITIONAL_SIGNING_PUBLIC_KEYS: PEM public keys published and accepted beside the current one.
ADDITIONAL_KEYS_SETTING = "additional_signing_public_keys"

_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def key_id(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint: SHA-256 of the required members (crv, kty, x) in lexicographic order,
    no whitespace, base64url without padding (for OKP keys, RFC 8037 section 2).

    PyJWT gives the JWK members; neither it nor cryptography computes thumbprints. The members are
    ASCII strings, for which ``json.dumps`` with sorted keys and compact separators is exactly the
    RFC's canonical form (checked against RFC 8037 appendix A.3 in the tests).
    """
    jwk = OKPAlgorithm.to_jwk(public_key, as_dict=True)
    required = {member: jwk[member] for member in ("crv", "kty", "x")}
    canonical = json.dumps(required, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    """The public JWK of one signing key, as published: kty OKP, crv Ed25519, x, use, alg, kid."""
    jwk = OKPAlgorithm.to_jwk(public_key, as_dict=True)
    return {
        "kty": jwk["kty"],
        "crv": jwk["crv"],
        "x": jwk["x"],
        "use": "sig",
        "alg": ALGORITHM,
        "kid": key_id(public_key),
    }


def additional_public_keys(settings: Settings) -> list[Ed25519PublicKey]:
    """Public keys from ``IMI_ADDITIONAL_SIGNING_PUBLIC_KEYS``: one or more PEM blocks (multi-line, or
    on one line with ``\\n`` escapes). Empty while the setting does not exist or is unset."""
    text: str | None = getattr(settings, ADDITIONAL_KEYS_SETTING, None)
    if not text:
        return []
    blocks = _PEM_BLOCK.findall(text.replace("\\n", "\n"))
    if not blocks:
        raise ValueError("IMI_ADDITIONAL_SIGNING_PUBLIC_KEYS holds no PEM public key")
    keys = []
    for block in blocks:
        key = serialization.load_pem_public_key(block.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("IMI_ADDITIONAL_SIGNING_PUBLIC_KEYS must hold Ed25519 public keys")
        keys.append(key)
    return keys


def verification_keys(settings: Settings) -> dict[str, Ed25519PublicKey]:
    """Every key a token of this registry may be signed with, by key id; the current one first."""
    keys: dict[str, Ed25519PublicKey] = {}
    for key in [signing_key(settings).public_key(), *additional_public_keys(settings)]:
        keys.setdefault(key_id(key), key)
    return keys


def jwks(settings: Settings) -> dict[str, Any]:
    """The JSON Web Key Set of ``/.well-known/jwks.json`` (public keys only)."""
    return {"keys": [public_jwk(key) for key in verification_keys(settings).values()]}


def access_claims(user: User, authority: Authority) -> dict[str, Any]:
    """What the token says about the caller (the claims :class:`shared.auth.Principal` reads), without
    the registered claims. Per-area roles by legislative area (rule S9); authority-wide roles, plus
    ``commission`` for the Commission's users (A3) and ``coordinator`` for coordinators' (A2)."""
    if user.authority_id != authority.id:
        raise ValueError("the user does not belong to this authority")
    kind = AuthorityKind(authority.kind)
    per_area: dict[str, set[str]] = {}
    authority_roles: set[str] = set()
    for held in user.roles:
        try:
            role = Role(held.role)
        except ValueError:
            continue  # a role this version does not know grants nothing
        if not role.per_area:
            authority_roles.add(role.value)
        elif held.area:
            per_area.setdefault(held.area, set()).add(role.value)
    if kind is AuthorityKind.commission:
        authority_roles.add("commission")
    if kind.is_coordinator:
        authority_roles.add("coordinator")
    coordinator = (
        {"kind": kind.value, "area": authority.coordinator_area, "region": authority.region}
        if kind.is_coordinator
        else None
    )
    return {
        "sub": str(user.id),
        "authority": str(authority.id),
        "country": authority.country,
        "language": user.language,
        "roles": {area: sorted(roles) for area, roles in sorted(per_area.items())},
        "authority_roles": sorted(authority_roles),
        "coordinator": coordinator,
    }


def issue_access_token(
    settings: Settings, user: User, authority: Authority, now: datetime, ttl: timedelta = ACCESS_TOKEN_TTL
) -> str:
    """A signed access token for ``user`` of ``authority``, valid from ``now`` for ``ttl``."""
    private_key: Ed25519PrivateKey = signing_key(settings)
    claims = {
        **access_claims(user, authority),
        "iss": settings.token_issuer,
        "aud": settings.token_audience,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "typ": "access",
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, private_key, algorithm=ALGORITHM, headers={"kid": key_id(private_key.public_key())})


class LocalTokenVerifier:
    """The registry's own :class:`shared.auth.TokenVerifier`: its public keys, no HTTP.

    Expiry and issue time are checked against ``clock`` (the service's clock, so tests that travel
    in time see tokens expire); signature, issuer, audience, type and claims by
    :func:`shared.auth.decode_access_token`.
    """

    def __init__(self, settings: Settings, clock: Clock | None = None, *, leeway: float = 5.0) -> None:
        self._keys = verification_keys(settings)
        self._issuer = settings.token_issuer
        self._audience = settings.token_audience
        self.clock: Clock = clock or SystemClock()
        self._leeway = leeway

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("token signed with an unknown key")
        return decode_access_token(
            token, key, issuer=self._issuer, audience=self._audience, leeway=self._leeway, now=self.clock.now()
        )
