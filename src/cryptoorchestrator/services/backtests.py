"""Backtests as jobs: create, follow, read results, render the report, cancel or delete.

The CPU work (signals and the numba kernel) runs in a process pool when one is configured, so
the API stays responsive; results (equity curve, trades) are Parquet files in the data directory,
metrics and a summary live in the database.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cryptoorchestrator.backtest import report as report_module
from cryptoorchestrator.backtest import runner
from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import Conflict, NotFound, ValidationFailed
from cryptoorchestrator.core.ids import new_uuid
from cryptoorchestrator.domain.jobs import Job, JobStatus
from cryptoorchestrator.domain.research import BacktestRecord
from cryptoorchestrator.services.jobs import JobContext, JobService
from cryptoorchestrator.services.market_data import MarketDataService
from cryptoorchestrator.services.ports import UnitOfWorkFactory
from cryptoorchestrator.services.strategies import StrategyService

BACKTEST_JOB = "backtest.run"


@dataclass(frozen=True, slots=True)
class BacktestView:
    record: BacktestRecord
    job: Job | None

    @property
    def status(self) -> str:
        return self.job.status.value if self.job else JobStatus.FAILED.value

    @property
    def progress_percent(self) -> float:
        return self.job.progress_percent if self.job else 0.0


class BacktestService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        *,
        jobs: JobService,
        market_data: MarketDataService,
        strategies: StrategyService,
        clock: Clock,
        results_dir: Path,
        executor_factory: Callable[[], Executor | None],
        max_candles: int,
        strategies_dir: str | None = None,
    ) -> None:
        self._uow = uow_factory
        self._jobs = jobs
        self._market_data = market_data
        self._strategies = strategies
        self._clock = clock
        self.results_dir = results_dir
        self._executor_factory = executor_factory
        self._max_candles = max_candles
        self._strategies_dir = strategies_dir
        jobs.register(BACKTEST_JOB, self._run)

    # --- the user's side ----------------------------------------------------------------

    async def create(self, user_id: int, request: dict[str, Any]) -> BacktestView:
        """``request``: strategy_id or strategy_type+params, symbol, exchange, timeframe,
        start_ms, end_ms and ``config`` (BacktestConfig fields). Validated before queuing."""
        strategy_id = request.get("strategy_id")
        if strategy_id:
            saved = await self._strategies.get(user_id, strategy_id)
            strategy_type, params = saved.strategy_type, {**saved.params, **(request.get("params") or {})}
        else:
            strategy_type, params = request["strategy_type"], request.get("params") or {}
        params = self._strategies.validate(strategy_type, params)
        runner.BacktestConfig(**request["config"])  # 422 naming the field, before anything is queued
        # Fails now (404 symbol, 422 range naming the stored one) rather than in the job.
        for symbol in request.get("symbols") or [request["symbol"]]:
            await self._history(request, symbol)
        record = BacktestRecord(
            id=new_uuid(),
            user_id=user_id,
            job_id=None,
            strategy_id=strategy_id,
            strategy_type=strategy_type,
            params=params,
            request=request,
            created_at=self._clock.now(),
        )
        async with self._uow() as uow:
            await uow.backtests.add(record)
            await uow.commit()
        job = await self._jobs.submit(user_id, BACKTEST_JOB, {"backtest_id": record.id})
        async with self._uow() as uow:
            await uow.backtests.set_job(record.id, job.id)
            await uow.commit()
        return await self.get(user_id, record.id)

    async def get(self, user_id: int, backtest_id: str) -> BacktestView:
        async with self._uow() as uow:
            record = await uow.backtests.get_for_user(backtest_id, user_id)
            if record is None:
                raise NotFound("Backtest not found.")
            job = await uow.jobs.get(record.job_id) if record.job_id else None
        return BacktestView(record, job)

    async def list(self, user_id: int, *, limit: int, offset: int) -> tuple[list[BacktestView], int]:
        async with self._uow() as uow:
            records, total = await uow.backtests.list_for_user(user_id, limit=limit, offset=offset)
            views = [BacktestView(r, await uow.jobs.get(r.job_id) if r.job_id else None) for r in records]
        return views, total

    async def cancel_or_delete(self, user_id: int, backtest_id: str) -> BacktestView | None:
        view = await self.get(user_id, backtest_id)
        if view.job is not None and view.job.status.is_active:
            await self._jobs.cancel_or_delete(user_id, view.job.id)
            return await self.get(user_id, backtest_id)
        async with self._uow() as uow:
            await uow.backtests.delete(backtest_id)
            await uow.commit()
        for suffix in (".equity.parquet", ".trades.parquet"):
            self._path(backtest_id).with_suffix(suffix).unlink(missing_ok=True)
        return None

    async def results(
        self, user_id: int, backtest_id: str
    ) -> tuple[BacktestView, pd.DataFrame, pd.DataFrame]:
        view = await self.get(user_id, backtest_id)
        if view.status != JobStatus.SUCCEEDED.value or view.record.metrics is None:
            raise Conflict(
                f"The backtest is {view.status}; results exist once it has succeeded.",
                details={"status": view.status, "progress_percent": view.progress_percent},
            )
        base = self._path(backtest_id)
        equity = await asyncio.to_thread(pd.read_parquet, base.with_suffix(".equity.parquet"))
        trades = await asyncio.to_thread(pd.read_parquet, base.with_suffix(".trades.parquet"))
        return view, equity, trades

    async def report(self, user_id: int, backtest_id: str, *, plotly_js: str = "inline") -> str:
        """The HTML report (metrics, price with trade markers, equity, drawdown)."""
        view, equity, trades = await self.results(user_id, backtest_id)
        request = view.record.request
        symbols = request.get("symbols") or [request["symbol"]]
        candles = await self._history(request, symbols[0])
        title = f"{view.record.strategy_type} on {', '.join(symbols)} {candles.timeframe}"
        if len(symbols) > 1 and "symbol" in trades:
            # The price panel shows the first symbol; equity and drawdown are the portfolio's.
            trades = trades[trades["symbol"] == candles.symbol]
        return await asyncio.to_thread(
            report_module.render_report,
            title=title,
            candles=candles.frame,
            equity=equity,
            trades=trades,
            metrics=view.record.metrics or {},
            summary=view.record.summary or {},
            plotly_js=plotly_js,
        )

    async def _history(self, request: dict[str, Any], symbol: str) -> Any:
        return await self._market_data.history(
            symbol,
            timeframe=request["timeframe"],
            start_ms=request["start_ms"],
            end_ms=request["end_ms"],
            exchange=request.get("exchange"),
            max_candles=self._max_candles,
        )

    def _path(self, backtest_id: str) -> Path:
        return self.results_dir / f"{backtest_id}.results"

    # --- the job ------------------------------------------------------------------------

    async def _run(self, context: JobContext) -> dict[str, Any]:
        backtest_id = context.params["backtest_id"]
        async with self._uow() as uow:
            record = await uow.backtests.get(backtest_id)
        if record is None:
            raise NotFound("The backtest was deleted.")
        request = record.request
        await context.report(5, "loading candles")
        symbols = request.get("symbols") or [request["symbol"]]
        loaded = [await self._history(request, symbol) for symbol in symbols]
        candles = loaded[0]
        await context.report(20, f"{sum(len(c.frame) for c in loaded)} candles loaded; running")
        common = {
            "strategy_type": record.strategy_type,
            "params": record.params,
            "config": request["config"],
            "results_path": self._path(backtest_id),
            "strategies_dir": self._strategies_dir,
        }
        if len(loaded) > 1:
            frames = {c.symbol: c.frame for c in loaded}
            max_positions = request.get("max_positions") or len(frames)
            work = functools.partial(runner.compute_portfolio, frames, max_positions=max_positions, **common)
        else:
            work = functools.partial(runner.compute, candles.frame, **common)
        executor = self._executor_factory()
        if executor is None:
            outcome = await asyncio.to_thread(work)
        else:
            outcome = await asyncio.get_running_loop().run_in_executor(executor, work)
        await context.report(95, "storing results")
        summary = {
            **outcome["summary"],
            "symbol": ", ".join(c.symbol for c in loaded),
            "exchange": candles.exchange,
            "data_source": candles.source,
        }
        async with self._uow() as uow:
            await uow.backtests.set_results(backtest_id, metrics=outcome["metrics"], summary=summary)
            await uow.commit()
        return {
            "backtest_id": backtest_id,
            "trades": summary["trades"],
            "final_equity": summary["final_equity"],
        }


def parse_config(raw: dict[str, Any]) -> dict[str, Any]:
    """Map the API's names onto BacktestConfig fields (the API accepts the seeds' names)."""
    if "commission" in raw:
        raw.setdefault("taker_fee", raw["commission"])
        raw.setdefault("maker_fee", raw.pop("commission"))
    unknown = set(raw) - set(runner.BacktestConfig.__dataclass_fields__)
    if unknown:
        raise ValidationFailed(
            f"Unknown backtest settings: {sorted(unknown)}.", details={"fields": sorted(unknown)}
        )
    return raw
