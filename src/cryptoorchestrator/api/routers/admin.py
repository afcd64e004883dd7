"""/admin: user management and the audit log (role admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from cryptoorchestrator.api.deps import AdminDep, ContainerDep, MetaDep, PageDep
from cryptoorchestrator.api.routers.auth import user_out
from cryptoorchestrator.domain.identity import Role
from cryptoorchestrator.schemas.auth import UserOut
from cryptoorchestrator.schemas.common import ERROR_RESPONSES, Page
from cryptoorchestrator.schemas.users import AdminUserUpdate, AuditEventOut

router = APIRouter(prefix="/admin", tags=["admin"], responses=ERROR_RESPONSES)


@router.get("/users", response_model=Page[UserOut])
async def list_users(
    admin: AdminDep,
    container: ContainerDep,
    page: PageDep,
    search: Annotated[str | None, Query(max_length=100)] = None,
) -> Page[UserOut]:
    users, total = await container.users.list_users(limit=page.limit, offset=page.offset, search=search)
    return Page(items=[user_out(u) for u in users], total=total, limit=page.limit, offset=page.offset)


@router.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: int, admin: AdminDep, container: ContainerDep) -> UserOut:
    return user_out(await container.users.get(user_id))


@router.patch("/users/{user_id}", response_model=UserOut)
async def update_user(
    user_id: int, body: AdminUserUpdate, admin: AdminDep, container: ContainerDep, meta: MetaDep
) -> UserOut:
    """Change a user's role or disable them (a disabled user's sessions end at once)."""
    user = await container.users.admin_update(
        admin.user,
        user_id,
        role=Role(body.role) if body.role else None,
        is_active=body.is_active,
        meta=meta,
    )
    return user_out(user)


@router.get("/audit-log", response_model=Page[AuditEventOut])
async def audit_log(
    admin: AdminDep,
    container: ContainerDep,
    page: PageDep,
    user_id: int | None = None,
    event: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[AuditEventOut]:
    events, total = await container.users.audit_log(
        limit=page.limit, offset=page.offset, user_id=user_id, event=event
    )
    items = [
        AuditEventOut(
            id=e.id or 0,
            event=e.event.value,
            success=e.success,
            created_at=e.created_at,
            actor_user_id=e.actor_user_id,
            target_user_id=e.target_user_id,
            ip=e.meta.ip,
            request_id=e.meta.request_id,
            details=e.details,
        )
        for e in events
    ]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)
