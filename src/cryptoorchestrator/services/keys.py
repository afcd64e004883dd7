"""Encryption-key rotation: re-encrypt every stored secret under the newest key."""

from __future__ import annotations

from dataclasses import dataclass

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.domain.identity import AuditEventType, RequestMeta
from cryptoorchestrator.security.encryption import SecretBox
from cryptoorchestrator.services import audit
from cryptoorchestrator.services.ports import UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class RotationResult:
    total: int
    rotated: int
    already_current: int


class KeyRotationService:
    def __init__(self, uow_factory: UnitOfWorkFactory, *, secret_box: SecretBox, clock: Clock) -> None:
        self._uow = uow_factory
        self._box = secret_box
        self._clock = clock

    async def rotate(self, *, meta: RequestMeta) -> RotationResult:
        """All in one transaction: either every secret moves to the newest key, or none does."""
        async with self._uow() as uow:
            stored = await uow.secrets.all()
            rotated = 0
            for table, key, column, ciphertext in stored:
                if self._box.is_current(ciphertext):
                    continue
                await uow.secrets.replace(table, key, column, self._box.rotate(ciphertext))
                rotated += 1
            now = self._clock.now()
            await audit.record(
                uow, AuditEventType.KEYS_ROTATE, now=now, meta=meta, total=len(stored), rotated=rotated
            )
            await uow.commit()
        return RotationResult(total=len(stored), rotated=rotated, already_current=len(stored) - rotated)
