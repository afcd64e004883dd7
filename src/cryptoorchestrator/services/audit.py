"""Recording security events inside the caller's transaction (never a secret in ``details``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cryptoorchestrator.domain.identity import AuditEvent, AuditEventType, RequestMeta
from cryptoorchestrator.services.ports import UnitOfWork


async def record(
    uow: UnitOfWork,
    event: AuditEventType,
    *,
    now: datetime,
    meta: RequestMeta,
    success: bool = True,
    actor_user_id: int | None = None,
    target_user_id: int | None = None,
    **details: Any,
) -> None:
    await uow.audit.add(
        AuditEvent(
            event=event,
            success=success,
            created_at=now,
            actor_user_id=actor_user_id,
            target_user_id=target_user_id if target_user_id is not None else actor_user_id,
            meta=meta,
            details=details,
        )
    )
