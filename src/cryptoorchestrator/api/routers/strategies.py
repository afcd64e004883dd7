"""/strategies: the built-in catalog, validation, and a user's saved strategies."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from cryptoorchestrator.api.deps import ContainerDep, PageDep, PrincipalDep
from cryptoorchestrator.domain.research import SavedStrategy
from cryptoorchestrator.schemas.common import ERROR_RESPONSES, Page
from cryptoorchestrator.schemas.research import (
    StrategyCreate,
    StrategyOut,
    StrategyTypeOut,
    StrategyTypesOut,
    StrategyUpdate,
    StrategyValidate,
    StrategyValidation,
)

router = APIRouter(prefix="/strategies", tags=["strategies"], responses=ERROR_RESPONSES)


def strategy_out(record: SavedStrategy) -> StrategyOut:
    return StrategyOut(
        id=record.id,
        name=record.name,
        strategy_type=record.strategy_type,
        params=record.params,
        description=record.description,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


@router.get("/types", response_model=StrategyTypesOut)
async def strategy_types(principal: PrincipalDep, container: ContainerDep) -> StrategyTypesOut:
    """The built-in strategies, each with the JSON Schema of its parameters and their defaults."""
    items = [StrategyTypeOut(**entry) for entry in container.strategies.catalog()]
    return StrategyTypesOut(items=items, total=len(items))


@router.post("/validate", response_model=StrategyValidation)
async def validate_strategy(
    body: StrategyValidate, principal: PrincipalDep, container: ContainerDep
) -> StrategyValidation:
    """Check a strategy type and its parameters (422 names the field; defaults are filled in)."""
    params = container.strategies.validate(body.strategy_type, body.params)
    return StrategyValidation(valid=True, strategy_type=body.strategy_type, params=params)


@router.get("", response_model=Page[StrategyOut])
async def list_strategies(
    principal: PrincipalDep, container: ContainerDep, page: PageDep
) -> Page[StrategyOut]:
    records, total = await container.strategies.list(principal.user.id, limit=page.limit, offset=page.offset)
    return Page(items=[strategy_out(r) for r in records], total=total, limit=page.limit, offset=page.offset)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=StrategyOut)
async def create_strategy(
    body: StrategyCreate, principal: PrincipalDep, container: ContainerDep
) -> StrategyOut:
    """Save a strategy: a type from `/strategies/types` (or `rules` with JSON conditions) and parameters."""
    record = await container.strategies.create(
        principal.user.id,
        name=body.name,
        strategy_type=body.strategy_type,
        params=body.params,
        description=body.description,
    )
    return strategy_out(record)


@router.get("/{strategy_id}", response_model=StrategyOut)
async def get_strategy(strategy_id: str, principal: PrincipalDep, container: ContainerDep) -> StrategyOut:
    return strategy_out(await container.strategies.get(principal.user.id, strategy_id))


@router.put("/{strategy_id}", response_model=StrategyOut)
async def replace_strategy(
    strategy_id: str, body: StrategyUpdate, principal: PrincipalDep, container: ContainerDep
) -> StrategyOut:
    """Update; the parameters sent replace the stored ones (defaults fill the rest)."""
    changes = body.model_dump(exclude_unset=True)
    return strategy_out(
        await container.strategies.update(principal.user.id, strategy_id, changes=changes, replace=True)
    )


@router.patch("/{strategy_id}", response_model=StrategyOut)
async def patch_strategy(
    strategy_id: str, body: StrategyUpdate, principal: PrincipalDep, container: ContainerDep
) -> StrategyOut:
    """Update; the parameters sent are merged into the stored ones."""
    changes = body.model_dump(exclude_unset=True)
    return strategy_out(
        await container.strategies.update(principal.user.id, strategy_id, changes=changes, replace=False)
    )


@router.delete("/{strategy_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_strategy(strategy_id: str, principal: PrincipalDep, container: ContainerDep) -> Response:
    await container.strategies.delete(principal.user.id, strategy_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
