"""Authentication and account wire models."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AliasChoices, EmailStr, Field, model_validator

from cryptoorchestrator.schemas.common import RequestModel, ResponseModel


class UserOut(ResponseModel):
    id: int
    username: str
    email: str
    role: Literal["user", "admin"]
    is_active: bool
    first_name: str | None = None
    last_name: str | None = None
    totp_enabled: bool
    created_at: datetime
    last_login_at: datetime | None = None


class RegisterRequest(RequestModel):
    username: str | None = Field(
        default=None,
        min_length=3,
        max_length=32,
        description="3-32 characters; derived from the email address when omitted.",
    )
    email: EmailStr
    password: str = Field(
        min_length=1, max_length=128, description="At least 10 characters, not a common one."
    )
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)


class LoginRequest(RequestModel):
    login: str = Field(
        min_length=1,
        max_length=320,
        validation_alias=AliasChoices("login", "username", "email"),
        description="Username or email address (also accepted as `username` or `email`).",
    )
    password: str = Field(min_length=1, max_length=128)
    totp_code: str | None = Field(
        default=None, max_length=10, validation_alias=AliasChoices("totp_code", "totpCode")
    )


class TokenResponse(ResponseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    user: UserOut


class RefreshRequest(RequestModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class TwoFactorSetupRequest(RequestModel):
    password: str = Field(min_length=1, max_length=128)


class TwoFactorSetupResponse(ResponseModel):
    secret: str
    otpauth_uri: str
    message: str = "Scan the URI with an authenticator app, then confirm with POST /auth/2fa/enable."


class TwoFactorCodeRequest(RequestModel):
    code: str = Field(min_length=6, max_length=10)


class TwoFactorDisableRequest(RequestModel):
    code: str = Field(min_length=6, max_length=10)
    password: str = Field(min_length=1, max_length=128)


class TwoFactorStatus(ResponseModel):
    enabled: bool


class ApiKeyCreateRequest(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Literal["read", "trade"]] = Field(default_factory=lambda: ["read"], min_length=1)
    expires_at: datetime | None = None

    @model_validator(mode="after")
    def _aware(self) -> ApiKeyCreateRequest:
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at must carry a timezone (use Z for UTC)")
        return self


class ApiKeyOut(ResponseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None = None
    expires_at: datetime | None = None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret key. It is shown only once: store it now.")
