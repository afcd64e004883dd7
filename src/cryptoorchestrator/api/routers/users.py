"""/users/me and /preferences."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from cryptoorchestrator.api.deps import ContainerDep, MetaDep, PrincipalDep, SessionDep
from cryptoorchestrator.api.routers.auth import user_out
from cryptoorchestrator.schemas.auth import UserOut
from cryptoorchestrator.schemas.common import ERROR_RESPONSES
from cryptoorchestrator.schemas.users import PreferencesUpdate, UserUpdateRequest

router = APIRouter(tags=["users"], responses=ERROR_RESPONSES)


@router.get("/users/me", response_model=UserOut)
async def get_me(principal: PrincipalDep) -> UserOut:
    return user_out(principal.user)


@router.patch("/users/me", response_model=UserOut)
async def update_me(
    body: UserUpdateRequest, principal: SessionDep, container: ContainerDep, meta: MetaDep
) -> UserOut:
    """Change username, email, names or password (`current_password` + `new_password`; a password
    change ends every session). Role and active flag cannot be set here."""
    changes = body.model_dump(exclude_unset=True, exclude={"current_password"})
    user = await container.users.update_profile(
        principal.user, changes=changes, current_password=body.current_password, meta=meta
    )
    return user_out(user)


@router.get("/preferences", response_model=dict[str, Any])
async def get_preferences(principal: PrincipalDep, container: ContainerDep) -> dict[str, Any]:
    return await container.users.get_preferences(principal.user.id)


@router.put("/preferences", response_model=dict[str, Any])
@router.patch("/preferences", response_model=dict[str, Any], include_in_schema=False)
async def update_preferences(
    body: PreferencesUpdate, principal: PrincipalDep, container: ContainerDep
) -> dict[str, Any]:
    """Partial update (seed 002): only the fields sent change, nested objects merge."""
    patch = body.model_dump(exclude_unset=True)
    return await container.users.update_preferences(principal.user.id, patch)
