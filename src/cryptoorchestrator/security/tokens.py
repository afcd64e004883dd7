"""JWT access and refresh tokens (HS256 by default; ``alg: none`` and other algorithms refused)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal, NamedTuple

import jwt

from cryptoorchestrator.core.errors import AuthenticationFailed, TokenExpired
from cryptoorchestrator.core.ids import new_uuid

TokenType = Literal["access", "refresh"]


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    session_id: str
    token_id: str
    token_type: TokenType
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    claims: TokenClaims


class TokenService:
    """Signs and verifies tokens. Only the configured algorithm is accepted on decode."""

    ISSUER = "cryptoorchestrator"

    def __init__(
        self,
        secret: str,
        *,
        algorithm: str = "HS256",
        access_ttl: timedelta = timedelta(minutes=30),
        refresh_ttl: timedelta = timedelta(days=7),
    ) -> None:
        if algorithm.lower() == "none":
            raise ValueError("unsigned tokens are never allowed")
        self._secret = secret
        self._algorithm = algorithm
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        # Signature checks dominate an authenticated request; a token string whose signature was
        # verified once stays verified, its claims read once (expiry and type are still checked on
        # every use).
        self._verified = lru_cache(maxsize=8192)(self._verify_signature)

    def _verify_signature(self, token: str) -> _Verified:
        payload: dict[str, Any] = jwt.decode(
            token,
            self._secret,
            algorithms=[self._algorithm],
            issuer=self.ISSUER,
            options={"require": ["exp", "iat", "sub", "sid", "jti", "typ"], "verify_exp": False},
        )
        return _Verified(payload, _claims(payload), _int_or(payload.get("exp"), 0))

    def subject(self, token: str) -> str | None:
        """The user id a correctly signed token names, or None (for rate-limit keys; no expiry check)."""
        try:
            return str(self._verified(token).payload["sub"])
        except jwt.InvalidTokenError:
            return None

    def issue(self, *, user_id: int, session_id: str, token_type: TokenType, now: datetime) -> IssuedToken:
        ttl = self.access_ttl if token_type == "access" else self.refresh_ttl
        claims = TokenClaims(
            user_id=user_id,
            session_id=session_id,
            token_id=new_uuid(),
            token_type=token_type,
            issued_at=now,
            expires_at=now + ttl,
        )
        payload: dict[str, Any] = {
            "sub": str(user_id),
            "sid": session_id,
            "jti": claims.token_id,
            "typ": token_type,
            "iss": self.ISSUER,
            "iat": int(now.timestamp()),
            "exp": int(claims.expires_at.timestamp()),
        }
        return IssuedToken(jwt.encode(payload, self._secret, algorithm=self._algorithm), claims)

    def decode(self, token: str, *, expected_type: TokenType, now: datetime) -> TokenClaims:
        try:
            verified = self._verified(token)
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed("The token is invalid.") from exc
        claims = verified.claims
        if verified.payload.get("typ") != expected_type:
            raise AuthenticationFailed(f"An {expected_type} token is required.")
        # Expiry is checked against the injected clock so tests can move time.
        if verified.expires <= int(now.timestamp()):
            raise TokenExpired()
        if claims is None:
            raise AuthenticationFailed("The token is invalid.")
        return claims


class _Verified(NamedTuple):
    """A token whose signature checked out: its payload, its claims (None when they are not
    well-formed: a token type we do not issue, a non-numeric subject or time) and its expiry."""

    payload: dict[str, Any]
    claims: TokenClaims | None
    expires: int


def _int_or(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _claims(payload: dict[str, Any]) -> TokenClaims | None:
    token_type = payload.get("typ")
    if token_type not in ("access", "refresh"):
        return None
    try:
        user_id = int(payload["sub"])
        issued_at = datetime.fromtimestamp(int(payload["iat"]), UTC)
        expires_at = datetime.fromtimestamp(int(payload["exp"]), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return TokenClaims(
        user_id=user_id,
        session_id=str(payload["sid"]),
        token_id=str(payload["jti"]),
        token_type=token_type,
        issued_at=issued_at,
        expires_at=expires_at,
    )
