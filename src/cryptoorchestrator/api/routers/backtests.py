"""/backtests: run a strategy over stored candles as a job, then read metrics, curve, trades, report."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Response, status
from fastapi.responses import HTMLResponse

from cryptoorchestrator.api.deps import ContainerDep, PageDep, PrincipalDep
from cryptoorchestrator.api.params import parse_time_ms
from cryptoorchestrator.core.errors import InvalidDateRange
from cryptoorchestrator.domain.jobs import Job
from cryptoorchestrator.schemas.common import ERROR_RESPONSES, Page
from cryptoorchestrator.schemas.research import (
    BacktestCreate,
    BacktestOut,
    BacktestResults,
    EquityPoint,
    OptimizeCreate,
    OptimizeOut,
    TradeOut,
)
from cryptoorchestrator.services.backtests import BacktestView, parse_config
from cryptoorchestrator.services.market_data import decimal_text

router = APIRouter(prefix="/backtests", tags=["backtests"], responses=ERROR_RESPONSES)


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _window(start: datetime | int, end: datetime | int) -> tuple[int, int]:
    """Both ends in epoch ms; INVALID_DATE_RANGE unless start < end."""
    start_ms = parse_time_ms(start, name="start") or 0
    end_ms = parse_time_ms(end, name="end") or 0
    if start_ms >= end_ms:
        raise InvalidDateRange("start must be before end.", details={"start": start_ms, "end": end_ms})
    return start_ms, end_ms


def backtest_out(view: BacktestView) -> BacktestOut:
    record, job = view.record, view.job
    return BacktestOut(
        id=record.id,
        status=view.status,  # type: ignore[arg-type]
        progress_percent=view.progress_percent,
        job_id=record.job_id,
        strategy_id=record.strategy_id,
        strategy_type=record.strategy_type,
        params=record.params,
        symbol=record.request.get("symbol") or ", ".join(record.request.get("symbols") or []),
        timeframe=record.request["timeframe"],
        start=_time(record.request["start_ms"]),
        end=_time(record.request["end_ms"]),
        created_at=record.created_at,
        message=job.message if job else "The job of this backtest was removed.",
        error=job.error if job else None,
        metrics=record.metrics,
        summary=record.summary,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=BacktestOut)
async def create_backtest(
    body: BacktestCreate, principal: PrincipalDep, container: ContainerDep
) -> BacktestOut:
    """Queue a backtest (answers 201 with `status` and `progress_percent`; poll `GET /backtests/{id}`)."""
    start_ms, end_ms = _window(body.start, body.end)
    config = parse_config(
        {
            "initial_cash": float(body.initial_capital),
            "commission": body.commission,
            "slippage": body.slippage_model,
            "slippage_bps": body.slippage_bps,
            "sizing": body.sizing,
            "size": body.size,
            "leverage": body.leverage,
            "stop_loss": body.stop_loss,
            "take_profit": body.take_profit,
            "trailing_stop": body.trailing_stop,
            "fill_at": body.fill_at,
            "timeframe": body.timeframe,
        }
    )
    request: dict[str, Any] = {
        "strategy_id": body.strategy_id,
        "strategy_type": body.strategy.strategy_type if body.strategy else None,
        "params": body.strategy.params if body.strategy else body.params,
        "symbol": body.symbol,
        "symbols": body.symbols if body.symbols and len(body.symbols) > 1 else None,
        "max_positions": body.max_positions,
        "exchange": body.exchange,
        "timeframe": body.timeframe,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "config": config,
    }
    if body.symbols and len(body.symbols) == 1:
        request["symbol"] = body.symbols[0]
    return backtest_out(await container.backtests.create(principal.user.id, request))


def optimize_out(job: Job) -> OptimizeOut:
    return OptimizeOut(
        id=job.id,
        status=job.status.value,  # type: ignore[arg-type]
        progress_percent=job.progress_percent,
        message=job.message,
        created_at=job.created_at,
        finished_at=job.finished_at,
        request=job.params,
        result=job.result,
        error=job.error,
    )


@router.post("/optimize", status_code=status.HTTP_201_CREATED, response_model=OptimizeOut)
async def create_optimization(
    body: OptimizeCreate, principal: PrincipalDep, container: ContainerDep
) -> OptimizeOut:
    """Search a strategy's parameters (grid, random or Optuna) on all cores, with an objective,
    optionally a walk-forward analysis and a Monte-Carlo of the best run. A job: poll
    `GET /backtests/optimize/{id}` for `progress_percent` and the result."""
    start_ms, end_ms = _window(body.start, body.end)
    config = parse_config(
        {
            "initial_cash": float(body.initial_capital),
            "commission": body.commission,
            "slippage_bps": body.slippage_bps,
            "timeframe": body.timeframe,
        }
    )
    request: dict[str, Any] = {
        "strategy_type": body.strategy.strategy_type if body.strategy else body.strategy_type,
        "fixed_params": body.strategy.params if body.strategy else None,
        "space": body.space,
        "method": body.method,
        "objective": body.objective,
        "n_trials": body.n_trials,
        "seed": body.seed,
        "min_trades": body.min_trades,
        "symbol": body.symbol,
        "exchange": body.exchange,
        "timeframe": body.timeframe,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "config": config,
        "walk_forward": body.walk_forward.model_dump() if body.walk_forward else None,
        "monte_carlo": body.monte_carlo,
    }
    return optimize_out(await container.optimizations.create(principal.user.id, request))


@router.get("/optimize/{optimization_id}", response_model=OptimizeOut)
async def get_optimization(
    optimization_id: str, principal: PrincipalDep, container: ContainerDep
) -> OptimizeOut:
    return optimize_out(await container.optimizations.get(principal.user.id, optimization_id))


@router.get("", response_model=Page[BacktestOut])
async def list_backtests(
    principal: PrincipalDep, container: ContainerDep, page: PageDep
) -> Page[BacktestOut]:
    views, total = await container.backtests.list(principal.user.id, limit=page.limit, offset=page.offset)
    return Page(items=[backtest_out(v) for v in views], total=total, limit=page.limit, offset=page.offset)


@router.get("/{backtest_id}", response_model=BacktestOut)
async def get_backtest(backtest_id: str, principal: PrincipalDep, container: ContainerDep) -> BacktestOut:
    return backtest_out(await container.backtests.get(principal.user.id, backtest_id))


def _downsample(length: int, points: int) -> np.ndarray:
    if length <= points:
        return np.arange(length)
    return np.unique(np.linspace(0, length - 1, points).round().astype(np.int64))


@router.get("/{backtest_id}/results", response_model=BacktestResults)
async def backtest_results(
    backtest_id: str,
    principal: PrincipalDep,
    container: ContainerDep,
    max_points: Annotated[
        int, Query(ge=10, le=100_000, description="Equity points returned (evenly spaced).")
    ] = 2000,
    trades_limit: Annotated[int, Query(ge=0, le=10_000)] = 1000,
) -> BacktestResults:
    """Metrics, the equity curve with drawdown, and the trades (409 until the backtest succeeded)."""
    view, equity, trades = await container.backtests.results(principal.user.id, backtest_id)
    picks = _downsample(len(equity), max_points)
    curve = [
        EquityPoint(timestamp=_time(int(ts)), equity=Decimal(decimal_text(eq)), drawdown=float(dd))
        for ts, eq, dd in zip(
            equity["timestamp"].to_numpy()[picks],
            equity["equity"].to_numpy()[picks],
            equity["drawdown"].to_numpy()[picks],
            strict=True,
        )
    ]
    rows = trades.head(trades_limit).to_dict("records")
    trade_list = [
        TradeOut(
            symbol=row.get("symbol"),
            side="long" if int(row["side"]) > 0 else "short",
            entry_time=_time(int(row["entry_time"])),
            exit_time=_time(int(row["exit_time"])),
            quantity=Decimal(decimal_text(row["quantity"])),
            entry_price=Decimal(decimal_text(row["entry_price"])),
            exit_price=Decimal(decimal_text(row["exit_price"])),
            fees=Decimal(decimal_text(row["entry_fee"] + row["exit_fee"])),
            pnl=Decimal(decimal_text(row["pnl"])),
            return_pct=float(row["trade_return"]) * 100,
            exit_reason=str(row["exit_reason"]),
        )
        for row in rows
    ]
    return BacktestResults(
        id=backtest_id,
        metrics=view.record.metrics or {},
        summary=view.record.summary or {},
        equity_curve=curve,
        trades=trade_list,
        trades_total=len(trades),
    )


@router.get("/{backtest_id}/report", response_class=HTMLResponse)
async def backtest_report(backtest_id: str, principal: PrincipalDep, container: ContainerDep) -> HTMLResponse:
    """An HTML report: metrics, interactive equity and drawdown charts, candles with trade markers."""
    html = await container.backtests.report(principal.user.id, backtest_id)
    return HTMLResponse(html)


@router.delete("/{backtest_id}", responses={204: {"description": "Deleted"}}, response_model=BacktestOut)
async def cancel_or_delete_backtest(
    backtest_id: str, principal: PrincipalDep, container: ContainerDep
) -> Response | BacktestOut:
    """Cancel a queued or running backtest (answers it, now canceled), or delete a finished one (204)."""
    view = await container.backtests.cancel_or_delete(principal.user.id, backtest_id)
    if view is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return backtest_out(view)
