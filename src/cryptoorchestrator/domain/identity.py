"""Users, sessions, API keys and security events as plain records (no ORM, no web types)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"


class Scope(StrEnum):
    READ = "read"
    TRADE = "trade"


class AuditEventType(StrEnum):
    REGISTER = "auth.register"
    LOGIN_SUCCESS = "auth.login.success"
    LOGIN_FAILURE = "auth.login.failure"
    LOGOUT = "auth.logout"
    REFRESH_REUSE = "auth.refresh.reuse"
    PASSWORD_CHANGE = "auth.password.change"
    TWO_FACTOR_SETUP = "auth.2fa.setup"
    TWO_FACTOR_ENABLE = "auth.2fa.enable"
    TWO_FACTOR_DISABLE = "auth.2fa.disable"
    API_KEY_CREATE = "auth.api_key.create"
    API_KEY_REVOKE = "auth.api_key.revoke"
    ADMIN_USER_UPDATE = "admin.user.update"
    ADMIN_CREATE = "admin.create"
    KEYS_ROTATE = "admin.keys.rotate"


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """Who is asking, from where: carried into audit records (never a secret)."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    email: str
    role: Role
    is_active: bool
    first_name: str | None
    last_name: str | None
    totp_enabled: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


@dataclass(frozen=True, slots=True)
class UserCredentials:
    """The secret parts of a user, needed only by the authentication service."""

    user: User
    password_hash: str
    totp_secret_encrypted: str | None


@dataclass(frozen=True, slots=True)
class AuthSession:
    id: str
    user_id: int
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class RefreshTokenRecord:
    token_id: str
    session_id: str
    user_id: int
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    user_id: int
    name: str
    prefix: str
    scopes: frozenset[Scope]
    created_at: datetime
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ApiKeySecret:
    """An API key with its stored digest, for authentication only."""

    key: ApiKey
    digest: str


@dataclass(frozen=True, slots=True)
class AuditEvent:
    event: AuditEventType
    success: bool
    created_at: datetime
    actor_user_id: int | None = None
    target_user_id: int | None = None
    meta: RequestMeta = RequestMeta()
    details: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of a request."""

    user: User
    session_id: str | None = None
    api_key_id: int | None = None
    scopes: frozenset[Scope] = frozenset({Scope.READ, Scope.TRADE})

    @property
    def via_api_key(self) -> bool:
        return self.api_key_id is not None
