"""API keys: created with scopes, shown once, stored hashed, revocable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import NotFound
from cryptoorchestrator.domain.identity import ApiKey, AuditEventType, RequestMeta, Scope, User
from cryptoorchestrator.security import apikeys
from cryptoorchestrator.services import audit
from cryptoorchestrator.services.auth import field_error
from cryptoorchestrator.services.ports import UnitOfWorkFactory

MAX_KEYS_PER_USER = 50


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    key: ApiKey
    secret: str


class ApiKeyService:
    def __init__(self, uow_factory: UnitOfWorkFactory, *, clock: Clock) -> None:
        self._uow = uow_factory
        self._clock = clock

    async def create(
        self,
        user: User,
        *,
        name: str,
        scopes: frozenset[Scope],
        expires_at: datetime | None,
        meta: RequestMeta,
    ) -> CreatedApiKey:
        now = self._clock.now()
        if expires_at is not None and expires_at <= now:
            raise field_error("expires_at", "The expiry must be in the future.")
        if not scopes:
            raise field_error("scopes", "Give at least one scope: read, trade.")
        async with self._uow() as uow:
            _, count = await uow.api_keys.list_for_user(user.id, limit=1, offset=0)
            if count >= MAX_KEYS_PER_USER:
                raise field_error("name", f"At most {MAX_KEYS_PER_USER} active API keys per user.")
            generated = apikeys.generate_api_key()
            key = await uow.api_keys.add(
                user_id=user.id,
                name=name,
                prefix=generated.prefix,
                digest=generated.digest,
                scopes=scopes,
                now=now,
                expires_at=expires_at,
            )
            await audit.record(
                uow, AuditEventType.API_KEY_CREATE, now=now, meta=meta, actor_user_id=user.id,
                api_key_id=key.id, prefix=key.prefix, scopes=sorted(s.value for s in scopes),
            )  # fmt: skip
            await uow.commit()
        return CreatedApiKey(key=key, secret=generated.key)

    async def list(self, user: User, *, limit: int, offset: int) -> tuple[list[ApiKey], int]:
        async with self._uow() as uow:
            return await uow.api_keys.list_for_user(user.id, limit=limit, offset=offset)

    async def get(self, user: User, key_id: int) -> ApiKey:
        async with self._uow() as uow:
            key = await uow.api_keys.get_for_user(key_id, user.id)
        if key is None:
            raise NotFound("API key not found.")
        return key

    async def revoke(self, user: User, key_id: int, *, meta: RequestMeta) -> None:
        async with self._uow() as uow:
            key = await uow.api_keys.get_for_user(key_id, user.id)
            if key is None:
                raise NotFound("API key not found.")
            now = self._clock.now()
            await uow.api_keys.revoke(key_id, now=now)
            await audit.record(
                uow, AuditEventType.API_KEY_REVOKE, now=now, meta=meta, actor_user_id=user.id,
                api_key_id=key_id, prefix=key.prefix,
            )  # fmt: skip
            await uow.commit()
