"""Health and status wire models."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from cryptoorchestrator.schemas.common import ResponseModel


class Health(ResponseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    timestamp: datetime
    uptime: float = Field(description="seconds since the process started")
    version: str
    environment: str


class ComponentHealth(ResponseModel):
    service: str
    status: Literal["healthy", "degraded", "unhealthy", "disabled"]
    response_time: float | None = Field(default=None, description="milliseconds")
    details: dict[str, Any] = Field(default_factory=dict)


class DetailedHealth(Health):
    services: list[ComponentHealth]
    system_metrics: dict[str, Any]
    versions: dict[str, str]


class Status(ResponseModel):
    status: Literal["operational", "degraded"]
    version: str
    environment: str
    timestamp: datetime
    uptime: float
    api_versions: list[str]
    database: Literal["sqlite", "postgresql"]
    jobs_backend: str
    rate_limit_storage: Literal["memory", "redis"]
