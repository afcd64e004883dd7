"""Secrets at rest: MultiFernet over several keys so keys can be rotated.

The first key encrypts; every key decrypts. ``rotate`` re-encrypts a token under the first key.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from cryptoorchestrator.core.errors import ConfigurationError


def generate_key() -> str:
    return Fernet.generate_key().decode()


def derive_key(secret: str) -> str:
    """A Fernet key derived from a secret (development fallback when no keys are configured)."""
    digest = hashlib.sha256(b"cryptoorchestrator-encryption:" + secret.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


class SecretBox:
    """Encrypts and decrypts short secrets (API credentials, TOTP seeds)."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigurationError("At least one encryption key is required.")
        try:
            self._fernets = [Fernet(key.encode() if isinstance(key, str) else key) for key in keys]
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                "CO_ENCRYPTION_KEYS holds a key that is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes); generate one with `cryptoorchestrator keys generate`."
            ) from exc
        self._multi = MultiFernet(self._fernets)

    def encrypt(self, plaintext: str) -> str:
        return self._multi.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._multi.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ConfigurationError(
                "A stored secret cannot be decrypted with the configured keys "
                "(was a key removed from CO_ENCRYPTION_KEYS before `keys rotate`?)."
            ) from exc

    def rotate(self, token: str) -> str:
        """Re-encrypt under the newest key (no-op in meaning, new ciphertext)."""
        try:
            return self._multi.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise ConfigurationError("A stored secret cannot be decrypted with the configured keys.") from exc

    def is_current(self, token: str) -> bool:
        """Whether the token is already encrypted under the newest key."""
        try:
            self._fernets[0].decrypt(token.encode())
        except InvalidToken:
            return False
        return True
