"""Parameter optimisation as a job: a search (grid, random or Optuna, on all cores), optionally a
walk-forward analysis and a Monte-Carlo resampling of the best parameters' trades.

The search runs in a thread that drives the worker processes; progress and cancellation cross
over through a shared counter and a threading.Event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
from typing import Any

import numpy as np

from cryptoorchestrator.backtest import montecarlo, optimize, walkforward
from cryptoorchestrator.backtest.engine import BacktestConfig, run_backtest
from cryptoorchestrator.core.errors import NotFound, ValidationFailed
from cryptoorchestrator.domain.jobs import Job
from cryptoorchestrator.services.jobs import JobCanceled, JobContext, JobService
from cryptoorchestrator.services.market_data import MarketDataService
from cryptoorchestrator.services.strategies import StrategyService

OPTIMIZE_JOB = "backtest.optimize"
TOP_ROWS = 20


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


class OptimizationService:
    def __init__(
        self,
        *,
        jobs: JobService,
        market_data: MarketDataService,
        strategies: StrategyService,
        workers: int,
        max_candles: int,
        max_combinations: int = 20_000,
    ) -> None:
        self._jobs = jobs
        self._market_data = market_data
        self._strategies = strategies
        self._workers = max(1, workers)
        self._max_candles = max_candles
        self._max_combinations = max_combinations
        jobs.register(OPTIMIZE_JOB, self._run)

    async def create(self, user_id: int, request: dict[str, Any]) -> Job:
        """Validate everything a user can get wrong, then queue the job."""
        strategy = self._strategies.registry.get(request["strategy_type"])
        space = optimize.ParameterSpace.from_specs(
            strategy, request["space"], fixed=request.get("fixed_params")
        )
        if request["method"] == "grid" and len(space.grid()) > self._max_combinations:
            raise ValidationFailed(
                f"The grid has more than {self._max_combinations} combinations; use random or optuna.",
                details={"field": "space", "max_combinations": self._max_combinations},
            )
        if request["n_trials"] > self._max_combinations:
            raise ValidationFailed(
                f"n_trials must be at most {self._max_combinations}.", details={"field": "n_trials"}
            )
        BacktestConfig(**request["config"])
        await self._candles(request)
        return await self._jobs.submit(user_id, OPTIMIZE_JOB, request)

    async def get(self, user_id: int, job_id: str) -> Job:
        job = await self._jobs.get(user_id, job_id)
        if job.kind != OPTIMIZE_JOB:
            raise NotFound("Optimisation not found.")
        return job

    async def _candles(self, request: dict[str, Any]) -> Any:
        return await self._market_data.history(
            request["symbol"],
            timeframe=request["timeframe"],
            start_ms=request["start_ms"],
            end_ms=request["end_ms"],
            exchange=request.get("exchange"),
            max_candles=self._max_candles,
        )

    async def _run(self, context: JobContext) -> dict[str, Any]:
        request = context.params
        await context.report(2, "loading candles")
        candles = (await self._candles(request)).frame
        done = {"done": 0, "total": 1}
        cancel = threading.Event()

        def progress(finished: int, total: int) -> None:
            done["done"], done["total"] = finished, max(total, 1)

        work = asyncio.create_task(
            asyncio.to_thread(self._search, candles, request, progress=progress, cancel=cancel)
        )
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=0.5)
                share = done["done"] / done["total"]
                await context.report(5 + 85 * share, f"{done['done']} of {done['total']} combinations")
        except (JobCanceled, asyncio.CancelledError):
            cancel.set()
            await asyncio.gather(work, return_exceptions=True)
            raise
        return _clean(work.result())

    def _search(
        self, candles: Any, request: dict[str, Any], *, progress: Any, cancel: threading.Event
    ) -> dict[str, Any]:
        config = BacktestConfig(**request["config"])
        strategy = request["strategy_type"]
        options = {
            "method": request["method"],
            "objective": request["objective"],
            "n_trials": request["n_trials"],
            "seed": request.get("seed"),
            "min_trades": request["min_trades"],
            "config": config,
            "fixed_params": request.get("fixed_params"),
        }
        result = optimize.optimize(
            strategy,
            candles,
            request["space"],
            workers=self._workers,
            progress=progress,
            cancel=cancel,
            **options,
        )
        ranked = result.table[result.table["status"] == "ok"].sort_values("score", ascending=False)
        out: dict[str, Any] = {
            "strategy_type": strategy,
            "method": result.method,
            "objective": result.objective,
            "best_params": result.best_params,
            "best_score": result.best_score,
            "best_metrics": result.best_metrics,
            "total": result.total,
            "evaluated": result.evaluated,
            "skipped": result.skipped,
            "failed": result.failed,
            "cancelled": result.cancelled,
            "elapsed_seconds": result.elapsed_seconds,
            "top": ranked.head(TOP_ROWS).to_dict("records"),
        }
        if result.best_params is not None and request.get("monte_carlo"):
            signals = optimize.strategy_signals(strategy, candles, result.best_params)
            best = run_backtest(candles, signals, config)
            returns = montecarlo.equity_trade_returns(best)
            if len(returns):
                simulated = montecarlo.monte_carlo(
                    returns, n_simulations=request["monte_carlo"], seed=request.get("seed")
                )
                out["monte_carlo"] = {"trades": len(returns), **simulated.summary()}
        forward = request.get("walk_forward")
        if forward and not cancel.is_set():
            analysis = walkforward.walk_forward(
                strategy,
                candles,
                request["space"],
                in_sample=forward["in_sample"],
                out_of_sample=forward["out_of_sample"],
                anchored=forward.get("anchored", False),
                workers=self._workers,
                cancel=cancel,
                **options,
            )
            out["walk_forward"] = {
                "windows": analysis.table().to_dict("records"),
                "stability": analysis.stability,
                "out_of_sample_metrics": dataclasses.asdict(analysis.metrics),
            }
        return out
