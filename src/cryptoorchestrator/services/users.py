"""The user's own profile and preferences, and the administrators' user management."""

from __future__ import annotations

from typing import Any

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import Conflict, NotFound, PermissionDenied
from cryptoorchestrator.domain.identity import AuditEvent, AuditEventType, RequestMeta, Role, User
from cryptoorchestrator.security import passwords
from cryptoorchestrator.security.passwords import PasswordHasher
from cryptoorchestrator.services import audit
from cryptoorchestrator.services.auth import SessionCache, check_username, field_error, normalise_email
from cryptoorchestrator.services.ports import UnitOfWorkFactory


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Merge ``patch`` into ``base`` recursively; ``None`` in the patch removes a key."""
    merged = dict(base)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class UserService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        *,
        hasher: PasswordHasher,
        clock: Clock,
        session_cache: SessionCache | None = None,
    ) -> None:
        self._uow = uow_factory
        self._hasher = hasher
        self._clock = clock
        self._sessions = session_cache or SessionCache(clock, ttl_seconds=0)

    async def get(self, user_id: int) -> User:
        async with self._uow() as uow:
            user = await uow.users.get(user_id)
        if user is None:
            raise NotFound("User not found.")
        return user

    async def update_profile(
        self,
        user: User,
        *,
        changes: dict[str, Any],
        current_password: str | None,
        meta: RequestMeta,
    ) -> User:
        """Username, email, names and password; never role or active flag (admins only)."""
        fields: dict[str, Any] = {}
        async with self._uow() as uow:
            now = self._clock.now()
            if "username" in changes and changes["username"] != user.username:
                fields["username"] = check_username(changes["username"])
                if await uow.users.exists(username=fields["username"]):
                    raise Conflict("This username is taken.", details={"field": "username"})
            if "email" in changes and changes["email"] is not None:
                email = normalise_email(changes["email"])
                if email != user.email:
                    if await uow.users.exists(email=email):
                        raise Conflict("An account with this email exists.", details={"field": "email"})
                    fields["email"] = email
            for name in ("first_name", "last_name"):
                if name in changes:
                    fields[name] = changes[name]
            new_password = changes.get("new_password")
            if new_password is not None:
                await self._check_password_change(uow, user, new_password, current_password)
                fields["password_hash"] = self._hasher.hash(new_password)
            if not fields:
                return user
            updated = await uow.users.update(user.id, now=now, **fields)
            if new_password is not None:
                await uow.sessions.revoke_all_for_user(user.id, now=now, reason="password_change")
                await audit.record(
                    uow, AuditEventType.PASSWORD_CHANGE, now=now, meta=meta, actor_user_id=user.id
                )
            await uow.commit()
        self._sessions.invalidate_all()
        return updated

    async def _check_password_change(
        self, uow: Any, user: User, new_password: str, current_password: str | None
    ) -> None:
        creds = await uow.users.get_credentials(user.id)
        if current_password is None or not self._hasher.verify(current_password, creds.password_hash):
            raise field_error("current_password", "The current password is required and must be right.")
        problems = passwords.password_problems(new_password, username=user.username, email=user.email)
        if problems:
            raise field_error("new_password", " ".join(problems))

    async def get_preferences(self, user_id: int) -> dict[str, Any]:
        async with self._uow() as uow:
            return await uow.users.get_preferences(user_id)

    async def update_preferences(self, user_id: int, patch: dict[str, Any]) -> dict[str, Any]:
        async with self._uow() as uow:
            merged = deep_merge(await uow.users.get_preferences(user_id), patch)
            await uow.users.set_preferences(user_id, merged, now=self._clock.now())
            await uow.commit()
            return merged

    # --- administration ---------------------------------------------------------------

    async def list_users(self, *, limit: int, offset: int, search: str | None) -> tuple[list[User], int]:
        async with self._uow() as uow:
            return await uow.users.list(limit=limit, offset=offset, search=search)

    async def admin_update(
        self,
        admin: User,
        user_id: int,
        *,
        role: Role | None,
        is_active: bool | None,
        meta: RequestMeta,
    ) -> User:
        async with self._uow() as uow:
            now = self._clock.now()
            target = await uow.users.get(user_id)
            if target is None:
                raise NotFound("User not found.")
            if target.id == admin.id and (role is Role.USER or is_active is False):
                raise PermissionDenied("Administrators cannot demote or disable themselves.")
            fields: dict[str, Any] = {}
            if role is not None and role is not target.role:
                fields["role"] = role
            if is_active is not None and is_active != target.is_active:
                fields["is_active"] = is_active
            if not fields:
                return target
            updated = await uow.users.update(user_id, now=now, **fields)
            if is_active is False:
                await uow.sessions.revoke_all_for_user(user_id, now=now, reason="disabled_by_admin")
            await audit.record(
                uow,
                AuditEventType.ADMIN_USER_UPDATE,
                now=now,
                meta=meta,
                actor_user_id=admin.id,
                target_user_id=user_id,
                changes={k: (v.value if isinstance(v, Role) else v) for k, v in fields.items()},
            )
            await uow.commit()
        self._sessions.invalidate_all()
        return updated

    async def audit_log(
        self, *, limit: int, offset: int, user_id: int | None, event: str | None
    ) -> tuple[list[AuditEvent], int]:
        async with self._uow() as uow:
            return await uow.audit.list(limit=limit, offset=offset, user_id=user_id, event=event)
