"""Secrets of users: passwords (argon2id), temporary passwords, and the 12-digit security code
(rule S12), kept encrypted as :class:`services.registry.models.Credentials` describes."""

from __future__ import annotations

import secrets
import string
import uuid

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SECURITY_CODE_LENGTH = 12
POSITIONS_ASKED = 3

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when the user name is unknown, so both failures cost the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-cost check; ``None`` (no such user) still spends one argon2 verification."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def generate_temporary_password() -> str:
    """16 characters with upper and lower case, digits and a symbol (passwords are case-sensitive)."""
    alphabet = string.ascii_letters + string.digits
    while True:
        core = "".join(secrets.choice(alphabet) for _ in range(15))
        if any(c.islower() for c in core) and any(c.isupper() for c in core) and any(c.isdigit() for c in core):
            return core + secrets.choice("!#%+=?")


def is_valid_security_code(code: str) -> bool:
    return len(code) == SECURITY_CODE_LENGTH and code.isascii() and code.isdigit()


def encrypt_security_code(key: bytes, user_id: uuid.UUID, code: str) -> bytes:
    nonce = secrets.token_bytes(12)
    return nonce + AESGCM(key).encrypt(nonce, code.encode(), user_id.bytes)


def security_code_matches(key: bytes, user_id: uuid.UUID, stored: bytes, answers: dict[int, str]) -> bool:
    """True when every asked position (1-based) holds the given digit; compared in constant time."""
    try:
        code = AESGCM(key).decrypt(stored[:12], stored[12:], user_id.bytes).decode()
    except (InvalidTag, ValueError):
        return False
    expected = "".join(code[position - 1] for position in sorted(answers))
    given = "".join(answers[position] for position in sorted(answers))
    return secrets.compare_digest(expected.encode(), given.encode())


def choose_positions() -> list[int]:
    """Three distinct random positions of the code, 1-based, in ascending order (rule S12)."""
    return sorted(secrets.SystemRandom().sample(range(1, SECURITY_CODE_LENGTH + 1), POSITIONS_ASKED))
