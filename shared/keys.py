"""Key material: the registry's token-signing key (Ed25519), the sealing key pair (X25519) that
lets the registry send a temporary password to the notifier that only the notifier can open, and
the registry's AES key for security codes.

Outside development every key must come from the environment. In development, keys missing from
the environment are generated once into ``<data dir>/keys`` so that ``imi up`` needs no setup.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from shared.settings import Settings, UnsafeConfiguration, require_secret


def _private_pem(key: Ed25519PrivateKey | X25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _public_pem(key: X25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def generate_keys() -> dict[str, str]:
    """Fresh keys, as the environment variables that carry them."""
    sealing = X25519PrivateKey.generate()
    return {
        "IMI_SIGNING_KEY": _private_pem(Ed25519PrivateKey.generate()),
        "IMI_SEALING_PRIVATE_KEY": _private_pem(sealing),
        "IMI_SEALING_PUBLIC_KEY": _public_pem(sealing.public_key()),
        "IMI_SECURITY_CODE_KEY": base64.b64encode(secrets.token_bytes(32)).decode() + "\n",
    }


def _development_keys(data_dir: Path) -> dict[str, str]:
    folder = data_dir / "keys"
    folder.mkdir(parents=True, exist_ok=True)
    generated = generate_keys()
    for name, value in generated.items():
        path = folder / f"{name.lower()}.pem"
        if not path.exists():
            path.write_text(value)
            path.chmod(0o600)
    return {name: (folder / f"{name.lower()}.pem").read_text() for name in generated}


def checked(*loaders: Callable[[Settings], object]) -> Callable[[Settings], None]:
    """A configuration check that loads each key once, turning a broken one into a clear refusal."""

    def check(settings: Settings) -> None:
        for load in loaders:
            try:
                load(settings)
            except UnsafeConfiguration:
                raise
            except (ValueError, TypeError) as exc:
                raise UnsafeConfiguration(f"{load.__name__.replace('_', ' ')} is not usable: {exc}") from exc

    return check


def key_pem(settings: Settings, setting: str) -> str:
    """The text of ``setting`` (signing_key, sealing_public_key, sealing_private_key, security_code_key)."""
    value = require_secret(settings, setting)
    if value is not None:
        # One-line form, as `imi keys generate` prints it for .env files and secret stores.
        return value.replace("\\n", "\n")
    return _development_keys(settings.data_dir)[f"IMI_{setting.upper()}"]


def security_code_key(settings: Settings) -> bytes:
    """The registry's AES-256 key for security codes (32 bytes, base64 in IMI_SECURITY_CODE_KEY)."""
    key = base64.b64decode(key_pem(settings, "security_code_key").strip())
    if len(key) != 32:
        raise ValueError("IMI_SECURITY_CODE_KEY must be 32 random bytes, base64-encoded")
    return key


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(key_pem(settings, "signing_key").encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("IMI_SIGNING_KEY must be an Ed25519 private key")
    return key


def sealing_public_key(settings: Settings) -> X25519PublicKey:
    key = serialization.load_pem_public_key(key_pem(settings, "sealing_public_key").encode())
    if not isinstance(key, X25519PublicKey):
        raise ValueError("IMI_SEALING_PUBLIC_KEY must be an X25519 public key")
    return key


def sealing_private_key(settings: Settings) -> X25519PrivateKey:
    key = serialization.load_pem_private_key(key_pem(settings, "sealing_private_key").encode(), password=None)
    if not isinstance(key, X25519PrivateKey):
        raise ValueError("IMI_SEALING_PRIVATE_KEY must be an X25519 private key")
    return key
