"""Job wire models."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from cryptoorchestrator.schemas.common import ResponseModel


class JobOut(ResponseModel):
    id: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    progress_percent: float = Field(ge=0, le=100)
    message: str | None = None
    params: dict[str, Any]
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
