"""Sealed boxes: the registry seals a temporary password to the notifier's public key; only the
notifier, holding the private key, can open it, and only to write the e-mail (rule S11,
ARCHITECTURE.md Identity and access). libsodium's sealed box (X25519 + XSalsa20-Poly1305)."""

from __future__ import annotations

import base64

from nacl.public import PrivateKey, PublicKey, SealedBox

from shared.keys import sealing_private_key, sealing_public_key
from shared.settings import Settings


def seal(settings: Settings, secret: str) -> str:
    """``secret`` sealed to the notifier, as base64 text for an event."""
    public = PublicKey(sealing_public_key(settings).public_bytes_raw())
    return base64.b64encode(SealedBox(public).encrypt(secret.encode())).decode()


def unseal(settings: Settings, sealed: str) -> str:
    """Open a sealed secret with the notifier's private key (raises on any tampering)."""
    private = PrivateKey(sealing_private_key(settings).private_bytes_raw())
    return SealedBox(private).decrypt(base64.b64decode(sealed)).decode()
