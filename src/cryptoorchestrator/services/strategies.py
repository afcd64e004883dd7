"""Strategies: the built-in catalog, a user's saved strategy configurations, validation."""

from __future__ import annotations

from typing import Any

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import Conflict, NotFound
from cryptoorchestrator.core.ids import new_uuid
from cryptoorchestrator.domain.research import SavedStrategy
from cryptoorchestrator.services.ports import UnitOfWorkFactory
from cryptoorchestrator.strategies.registry import StrategyRegistry


class StrategyService:
    def __init__(self, uow_factory: UnitOfWorkFactory, *, registry: StrategyRegistry, clock: Clock) -> None:
        self._uow = uow_factory
        self.registry = registry
        self._clock = clock

    def catalog(self) -> list[dict[str, Any]]:
        return self.registry.catalog()

    def validate(self, strategy_type: str, params: dict[str, Any] | None) -> dict[str, Any]:
        """Validated parameters with defaults filled in (404 unknown type, 422 naming a field)."""
        validated = self.registry.validate_params(strategy_type, params or {})
        return validated.model_dump(mode="json")

    async def create(
        self,
        user_id: int,
        *,
        name: str,
        strategy_type: str,
        params: dict[str, Any] | None,
        description: str | None,
    ) -> SavedStrategy:
        clean = self.validate(strategy_type, params)
        now = self._clock.now()
        async with self._uow() as uow:
            if await uow.strategies.name_taken(user_id, name):
                raise Conflict(f"You already have a strategy named '{name}'.", details={"field": "name"})
            record = await uow.strategies.add(
                SavedStrategy(
                    id=new_uuid(),
                    user_id=user_id,
                    name=name,
                    strategy_type=strategy_type,
                    params=clean,
                    description=description,
                    created_at=now,
                    updated_at=now,
                )
            )
            await uow.commit()
        return record

    async def get(self, user_id: int, strategy_id: str) -> SavedStrategy:
        async with self._uow() as uow:
            record = await uow.strategies.get_for_user(strategy_id, user_id)
        if record is None:
            raise NotFound("Strategy not found.", code="STRATEGY_NOT_FOUND")
        return record

    async def list(self, user_id: int, *, limit: int, offset: int) -> tuple[list[SavedStrategy], int]:
        async with self._uow() as uow:
            return await uow.strategies.list_for_user(user_id, limit=limit, offset=offset)

    async def update(
        self, user_id: int, strategy_id: str, *, changes: dict[str, Any], replace: bool
    ) -> SavedStrategy:
        """PUT replaces the parameters; PATCH merges them into the stored ones."""
        async with self._uow() as uow:
            current = await uow.strategies.get_for_user(strategy_id, user_id)
            if current is None:
                raise NotFound("Strategy not found.", code="STRATEGY_NOT_FOUND")
            strategy_type = changes.get("strategy_type") or current.strategy_type
            fields: dict[str, Any] = {}
            if "name" in changes and changes["name"] != current.name:
                if await uow.strategies.name_taken(user_id, changes["name"], except_id=strategy_id):
                    raise Conflict(
                        f"You already have a strategy named '{changes['name']}'.", details={"field": "name"}
                    )
                fields["name"] = changes["name"]
            if "description" in changes:
                fields["description"] = changes["description"]
            if "params" in changes or strategy_type != current.strategy_type:
                raw = changes.get("params") or {}
                merged = (
                    raw if replace or strategy_type != current.strategy_type else {**current.params, **raw}
                )
                fields["params"] = self.validate(strategy_type, merged)
                fields["strategy_type"] = strategy_type
            if not fields:
                return current
            record = await uow.strategies.update(strategy_id, now=self._clock.now(), **fields)
            await uow.commit()
        return record

    async def delete(self, user_id: int, strategy_id: str) -> None:
        async with self._uow() as uow:
            if await uow.strategies.get_for_user(strategy_id, user_id) is None:
                raise NotFound("Strategy not found.", code="STRATEGY_NOT_FOUND")
            await uow.strategies.delete(strategy_id)
            await uow.commit()
