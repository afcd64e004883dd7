"""TOTP two-factor authentication (RFC 6238 through pyotp)."""

from __future__ import annotations

from datetime import datetime

import pyotp

ISSUER = "CryptoOrchestrator"


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def verify(secret: str, code: str, *, at: datetime) -> bool:
    """Accept the current code and one step either side (clock drift)."""
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != 6:
        return False
    return pyotp.TOTP(secret).verify(code, for_time=at, valid_window=1)


def current_code(secret: str, *, at: datetime) -> str:
    return pyotp.TOTP(secret).at(at)
