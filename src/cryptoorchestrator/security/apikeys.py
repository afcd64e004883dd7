"""API key generation and hashing. The secret is shown once; only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX = "co"


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    key: str  # the full secret, returned to the user exactly once
    prefix: str  # public lookup part, stored in clear
    digest: str  # sha256 of the whole key, stored


def generate_api_key() -> GeneratedKey:
    lookup = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = f"{PREFIX}_{lookup}_{secret}"
    return GeneratedKey(key=key, prefix=lookup, digest=hash_api_key(key))


def hash_api_key(key: str) -> str:
    # The key carries 256 bits of entropy, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(key.encode()).hexdigest()


def parse_prefix(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or len(parts[1]) != 12:
        return None
    return parts[1]


def digest_matches(key: str, digest: str) -> bool:
    return hmac.compare_digest(hash_api_key(key), digest)
