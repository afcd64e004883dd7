"""TOTP two-factor authentication: setup (pending secret), enable with a code, disable."""

from __future__ import annotations

from dataclasses import dataclass

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import Conflict, InvalidCredentials
from cryptoorchestrator.domain.identity import AuditEventType, RequestMeta, User
from cryptoorchestrator.security import totp
from cryptoorchestrator.security.encryption import SecretBox
from cryptoorchestrator.security.passwords import PasswordHasher
from cryptoorchestrator.services import audit
from cryptoorchestrator.services.auth import SessionCache, field_error
from cryptoorchestrator.services.ports import UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class TwoFactorSetup:
    secret: str
    otpauth_uri: str


class TwoFactorService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        *,
        hasher: PasswordHasher,
        secret_box: SecretBox,
        clock: Clock,
        session_cache: SessionCache | None = None,
    ) -> None:
        self._sessions = session_cache or SessionCache(clock, ttl_seconds=0)
        self._uow = uow_factory
        self._hasher = hasher
        self._box = secret_box
        self._clock = clock

    async def setup(self, user: User, *, password: str, meta: RequestMeta) -> TwoFactorSetup:
        async with self._uow() as uow:
            creds = await uow.users.get_credentials(user.id)
            if creds is None or not self._hasher.verify(password, creds.password_hash):
                raise InvalidCredentials("The password is wrong.")
            if creds.user.totp_enabled:
                raise Conflict("Two-factor authentication is already on; disable it first.")
            secret = totp.new_secret()
            now = self._clock.now()
            await uow.users.update(user.id, now=now, totp_secret_encrypted=self._box.encrypt(secret))
            await audit.record(
                uow, AuditEventType.TWO_FACTOR_SETUP, now=now, meta=meta, actor_user_id=user.id
            )
            await uow.commit()
        return TwoFactorSetup(secret=secret, otpauth_uri=totp.provisioning_uri(secret, user.email))

    async def enable(self, user: User, *, code: str, meta: RequestMeta) -> None:
        async with self._uow() as uow:
            creds = await uow.users.get_credentials(user.id)
            if creds is None or creds.totp_secret_encrypted is None:
                raise Conflict("Call /auth/2fa/setup first.")
            if creds.user.totp_enabled:
                raise Conflict("Two-factor authentication is already on.")
            now = self._clock.now()
            if not totp.verify(self._box.decrypt(creds.totp_secret_encrypted), code, at=now):
                raise field_error("code", "The code is wrong or expired.")
            await uow.users.update(user.id, now=now, totp_enabled=True)
            await audit.record(
                uow, AuditEventType.TWO_FACTOR_ENABLE, now=now, meta=meta, actor_user_id=user.id
            )
            await uow.commit()
        self._sessions.invalidate_all()

    async def disable(self, user: User, *, code: str, password: str, meta: RequestMeta) -> None:
        async with self._uow() as uow:
            creds = await uow.users.get_credentials(user.id)
            if creds is None or not creds.user.totp_enabled or creds.totp_secret_encrypted is None:
                raise Conflict("Two-factor authentication is not on.")
            if not self._hasher.verify(password, creds.password_hash):
                raise InvalidCredentials("The password is wrong.")
            now = self._clock.now()
            if not totp.verify(self._box.decrypt(creds.totp_secret_encrypted), code, at=now):
                raise field_error("code", "The code is wrong or expired.")
            await uow.users.update(user.id, now=now, totp_enabled=False, totp_secret_encrypted=None)
            await audit.record(
                uow, AuditEventType.TWO_FACTOR_DISABLE, now=now, meta=meta, actor_user_id=user.id
            )
            await uow.commit()
        self._sessions.invalidate_all()
