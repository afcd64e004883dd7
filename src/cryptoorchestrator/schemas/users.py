"""Profile, preferences and administration wire models."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import EmailStr, Field

from cryptoorchestrator.schemas.common import RequestModel, ResponseModel


class UserUpdateRequest(RequestModel):
    """What a user may change about themselves: never role or active flag."""

    username: str | None = Field(default=None, min_length=3, max_length=32)
    email: EmailStr | None = None
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    current_password: str | None = Field(default=None, max_length=128)
    new_password: str | None = Field(default=None, min_length=1, max_length=128)


class NotificationPreferences(RequestModel):
    email: bool | None = None
    push: bool | None = None
    in_app: bool | None = None
    trade_alerts: bool | None = None
    price_alerts: bool | None = None
    bot_alerts: bool | None = None
    risk_alerts: bool | None = None


class RiskPreferences(RequestModel):
    max_position_size: float | None = Field(default=None, ge=0, le=100, description="percent of equity")
    max_drawdown: float | None = Field(default=None, ge=0, le=100, description="percent")
    max_daily_loss: float | None = Field(default=None, ge=0, le=100, description="percent")


class PreferencesUpdate(RequestModel):
    """Partial update: only the fields sent change; ``null`` removes a field."""

    theme: Literal["light", "dark", "system"] | None = None
    language: str | None = Field(default=None, min_length=2, max_length=10)
    timezone: str | None = Field(default=None, max_length=64)
    currency: str | None = Field(default=None, min_length=2, max_length=10)
    default_exchange: str | None = Field(default=None, max_length=50)
    default_timeframe: str | None = Field(default=None, max_length=5)
    notifications: NotificationPreferences | None = None
    risk_settings: RiskPreferences | None = None
    dashboard: dict[str, Any] | None = None


class AdminUserUpdate(RequestModel):
    role: Literal["user", "admin"] | None = None
    is_active: bool | None = None


class AuditEventOut(ResponseModel):
    id: int
    event: str
    success: bool
    created_at: datetime
    actor_user_id: int | None
    target_user_id: int | None
    ip: str | None
    request_id: str | None
    details: dict[str, Any]
