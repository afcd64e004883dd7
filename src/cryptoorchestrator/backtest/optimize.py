"""Parameter optimisation of a strategy over the fast backtest: grid, random and Optuna (TPE).

A :class:`ParameterSpace` is built from explicit specs and checked against the strategy's
parameter model (its JSON-Schema bounds and types)::

    {"fast": {"low": 5, "high": 50, "step": 5}, "slow": {"values": [20, 30, 50]}}

* ``{"low", "high", "step"}``: an integer range (``step`` defaults to 1) or, for a float
  parameter, a float range (``step`` optional; a grid needs it, random and Optuna sample
  uniformly without it);
* ``{"values": [...]}``: a list of choices (any type the parameter accepts).

A name the model does not know, or a bound outside the model's ``ge``/``le``/``gt``/``lt``, raises
:class:`~cryptoorchestrator.core.errors.ValidationFailed` (422) whose ``details["field"]`` names
the parameter. A *combination* that the strategy's own validation rejects (``fast >= slow`` for a
crossover) is skipped and counted, never fatal; a combination whose signals or backtest raise is
counted as failed.

Scores are "higher is better" for every objective: ``max_drawdown`` is a negative fraction, so
maximising it minimises the depth of the drawdown. A combination with fewer than ``min_trades``
closed trades, or whose objective is NaN, scores ``-inf`` (the worst). Ties go to the combination
evaluated first, so the best of a grid does not depend on the number of workers.

Parallelism: a ``ProcessPoolExecutor`` with the *spawn* context (no forked numba/BLAS state);
each task evaluates a chunk of combinations. A pool made by :func:`optimize` installs the candles
once per worker through its initializer; a caller-owned :class:`WorkerPool` (reused across calls,
e.g. by walk-forward) installs them once per call in every worker. Sending the frame with each
chunk instead was measured 2x slower on 2 cores (pickling competes with the workers).
``workers=1`` runs in this process.
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd

from cryptoorchestrator.backtest import metrics as metrics_module
from cryptoorchestrator.backtest.engine import SIGNAL_COLUMNS, BacktestConfig, BacktestResult, run_backtest
from cryptoorchestrator.backtest.space import (
    ParameterSpace,
    StrategyRef,
    resolve_strategy,
)
from cryptoorchestrator.core.errors import CryptoOrchestratorError, ValidationFailed
from cryptoorchestrator.strategies import loader

Objective = Literal["sharpe", "sortino", "calmar", "total_return", "profit_factor", "max_drawdown"]
Method = Literal["grid", "random", "optuna"]
Progress: TypeAlias = Callable[[int, int], None]

OBJECTIVES: tuple[str, ...] = ("sharpe", "sortino", "calmar", "total_return", "profit_factor", "max_drawdown")
METHODS: tuple[str, ...] = ("grid", "random", "optuna")
METRIC_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(metrics_module.Metrics))


def _invalid(field: str, message: str, **extra: Any) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", details={"field": field, **extra})


# --- evaluation (runs in workers: module-level functions only, so the pool can pickle them) ---------


def strategy_signals(
    strategy: StrategyRef | loader.GuardedStrategy, candles: pd.DataFrame, params: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """The four signal arrays of ``strategy`` on ``candles`` (user code behind the guard)."""
    guarded = (
        strategy if isinstance(strategy, loader.GuardedStrategy) else loader.guard(resolve_strategy(strategy))
    )
    signals = guarded.signals(candles, params)
    return {name: getattr(signals, name) for name in SIGNAL_COLUMNS}


def score_metrics(metrics: metrics_module.Metrics, objective: str, *, min_trades: int = 0) -> float:
    """The score of ``metrics`` (higher is better); ``-inf`` below ``min_trades`` or when NaN."""
    if metrics.total_trades < min_trades:
        return -math.inf
    value = float(getattr(metrics, objective))
    return -math.inf if math.isnan(value) else value


@dataclasses.dataclass(frozen=True, slots=True)
class _Task:
    strategy: StrategyRef
    candles: pd.DataFrame | None  # None: use the frame installed in the worker under ``candles_key``
    combos: tuple[tuple[int, dict[str, Any]], ...]
    config: BacktestConfig
    objective: str
    min_trades: int
    candles_key: str = ""


_WORKER_CANDLES: dict[str, pd.DataFrame] = {}
_WORKER_BARRIER: Any = None


def _install_candles(candles: pd.DataFrame, key: str = "") -> None:
    """Pool initializer (and :meth:`WorkerPool.install` task): keep the candles in the worker."""
    _WORKER_CANDLES.clear()  # one frame at a time: a worker holds no stale copies
    _WORKER_CANDLES[key] = candles


def _install_everywhere(candles: pd.DataFrame, key: str) -> None:
    """Install, then wait for every other worker: one such task lands on each worker."""
    _install_candles(candles, key)
    _WORKER_BARRIER.wait(timeout=120)


def _warm_worker(barrier: Any = None) -> None:
    """Pool initializer of :class:`WorkerPool`: import and load the numba kernel once."""
    global _WORKER_BARRIER
    _WORKER_BARRIER = barrier
    n = 8
    prices = {c: np.full(n, 100.0) for c in ("open", "high", "low", "close", "volume")}
    run_backtest(prices, {"entry_long": np.zeros(n, np.bool_)}, BacktestConfig())


def _pause(seconds: float) -> None:
    """A task that holds a worker briefly, so that a pool spawns all its workers at once."""
    time.sleep(seconds)


def _evaluate_chunk(task: _Task) -> list[dict[str, Any]]:
    """Backtest each combination of the chunk; one row (params, status, score, metrics) each."""
    candles = task.candles if task.candles is not None else _WORKER_CANDLES.get(task.candles_key)
    if candles is None:
        raise RuntimeError("worker has no candles installed")
    guarded = loader.guard(resolve_strategy(task.strategy))
    rows = []
    for index, params in task.combos:
        row: dict[str, Any] = {"index": index, "params": params}
        try:
            result = run_backtest(candles, strategy_signals(guarded, candles, params), task.config)
            metrics = result.metrics()
        except CryptoOrchestratorError as exc:
            rows.append({**row, "status": "failed", "score": -math.inf, "error": exc.message})
            continue
        score = score_metrics(metrics, task.objective, min_trades=task.min_trades)
        rows.append({**row, "status": "ok", "score": score, "error": None, **dataclasses.asdict(metrics)})
    return rows


# --- scheduling ---------------------------------------------------------------------------------


class WorkerPool:
    """A reusable spawn-context process pool (workers import and warm the kernel once).

    Use it as a context manager and pass it to :func:`optimize` (``pool=``) to share it between
    calls. Each call installs its candles in every worker once (:meth:`install`, a task per worker
    held at a barrier so that each worker gets exactly one); chunks then carry only a key.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        context = multiprocessing.get_context("spawn")
        self._installs = 0
        self.executor = futures.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_warm_worker,
            initargs=(context.Barrier(self.workers),),
        )
        # Workers spawn on demand: occupy them all at once so each starts and warms up now,
        # not in the middle of the first timed search.
        futures.wait([self.executor.submit(_pause, 0.2) for _ in range(self.workers)])

    def install(self, candles: pd.DataFrame) -> str:
        """Send ``candles`` to every worker once; returns the key chunks refer to."""
        self._installs += 1
        key = f"{os.getpid()}-{self._installs}"
        jobs = [self.executor.submit(_install_everywhere, candles, key) for _ in range(self.workers)]
        for job in jobs:
            job.result()
        return key

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Stop the workers (waits for running chunks)."""
        self.executor.shutdown(wait=True, cancel_futures=True)


@dataclasses.dataclass
class _Runner:
    """Runs chunks in-process or on an executor, with progress and cancellation between chunks."""

    task: _Task
    executor: futures.Executor | None
    workers: int
    chunk_size: int | None
    progress: Progress | None
    cancel: threading.Event | None
    total: int
    done: int = 0
    cancelled: bool = False

    def _chunks(self, combos: Sequence[tuple[int, dict[str, Any]]]) -> Iterator[_Task]:
        size = self.chunk_size or max(1, min(64, math.ceil(len(combos) / (4 * self.workers))))
        for start in range(0, len(combos), size):
            yield dataclasses.replace(self.task, combos=tuple(combos[start : start + size]))

    def _finish_chunk(self, count: int) -> None:
        self.done += count
        if self.progress is not None:
            self.progress(self.done, self.total)

    def advance(self, count: int) -> None:
        """Count combinations settled without a backtest (skipped), reporting progress."""
        if count:
            self._finish_chunk(count)

    def run(self, combos: Sequence[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Evaluate ``combos``; stops submitting new chunks once ``cancel`` is set."""
        rows: list[dict[str, Any]] = []
        chunks = self._chunks(combos)
        if self.executor is None:
            for chunk in chunks:
                if self._is_cancelled():
                    break
                rows.extend(_evaluate_chunk(chunk))
                self._finish_chunk(len(chunk.combos))
            return rows
        in_flight: dict[futures.Future[list[dict[str, Any]]], int] = {}
        for chunk in self._fill(chunks, in_flight):
            in_flight[self.executor.submit(_evaluate_chunk, chunk)] = len(chunk.combos)
        while in_flight:
            finished, _ = futures.wait(in_flight, return_when=futures.FIRST_COMPLETED)
            for future in finished:
                rows.extend(future.result())
                self._finish_chunk(in_flight.pop(future))
            for chunk in self._fill(chunks, in_flight):
                in_flight[self.executor.submit(_evaluate_chunk, chunk)] = len(chunk.combos)
        return rows

    def _fill(self, chunks: Iterator[_Task], in_flight: Mapping[Any, int]) -> Iterable[_Task]:
        # Two chunks per worker in flight keeps every core busy without queueing the whole run,
        # so a cancel takes effect after at most that much work.
        while len(in_flight) < 2 * self.workers and not self._is_cancelled():
            chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk

    def _is_cancelled(self) -> bool:
        if self.cancel is not None and self.cancel.is_set():
            self.cancelled = True
        return self.cancelled


# --- the public entry point ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class OptimizationResult:
    """What :func:`optimize` returns.

    ``table`` has one row per combination tried, in evaluation order: the parameters, ``status``
    (``ok``, ``skipped``, ``failed``), ``score``, ``error`` and every :class:`Metrics` field.
    ``best_params`` is None when no combination could be evaluated.
    """

    strategy: str
    method: str
    objective: str
    best_params: dict[str, Any] | None
    best_score: float
    table: pd.DataFrame
    total: int
    evaluated: int
    skipped: int
    failed: int
    cancelled: bool
    elapsed_seconds: float

    @property
    def best_metrics(self) -> dict[str, Any] | None:
        """The metrics row of the best combination."""
        if self.best_params is None:
            return None
        ok = self.table[self.table["status"] == "ok"]
        row = ok.loc[ok["score"].idxmax()]
        return {name: row[name] for name in METRIC_NAMES}


def _check_options(method: str, objective: str, n_trials: int, min_trades: int, workers: int | None) -> None:
    if method not in METHODS:
        raise _invalid("method", f"must be one of {list(METHODS)}")
    if objective not in OBJECTIVES:
        raise _invalid("objective", f"must be one of {list(OBJECTIVES)}")
    if method != "grid" and n_trials < 1:
        raise _invalid("n_trials", "must be >= 1")
    if min_trades < 0:
        raise _invalid("min_trades", "must be >= 0")
    if workers is not None and workers < 1:
        raise _invalid("workers", "must be >= 1")


def _screen(
    guarded: loader.GuardedStrategy, combos: Iterable[tuple[int, dict[str, Any]]]
) -> tuple[list[tuple[int, dict[str, Any]]], list[dict[str, Any]]]:
    """Split combinations into those the strategy accepts and skipped/failed rows for the rest."""
    valid, rejected = [], []
    for index, params in combos:
        try:
            guarded.validate_params(params)
        except ValidationFailed as exc:
            reason = "; ".join(str(e.get("msg")) for e in exc.details.get("errors", [])) or exc.message
            rejected.append(_rejected_row(index, params, "skipped", reason))
            continue
        except CryptoOrchestratorError as exc:
            rejected.append(_rejected_row(index, params, "failed", exc.message))
            continue
        valid.append((index, params))
    return valid, rejected


def _rejected_row(index: int, params: dict[str, Any], status: str, error: str) -> dict[str, Any]:
    return {"index": index, "params": params, "status": status, "score": -math.inf, "error": error}


def _optuna_rows(
    space: ParameterSpace,
    runner: _Runner,
    guarded: loader.GuardedStrategy,
    *,
    n_trials: int,
    seed: int | None,
    batch_size: int,
) -> list[dict[str, Any]]:
    """Ask/tell loop: each batch of trials is evaluated as one parallel wave.

    The batch size, not the worker count, shapes what TPE sees, so ``(seed, batch_size)`` fixes
    the result whatever the number of workers.
    """
    import optuna  # imported here: workers and grid searches never pay for it

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        rows: list[dict[str, Any]] = []
        while len(rows) < n_trials and not runner._is_cancelled():
            trials = [study.ask() for _ in range(min(batch_size, n_trials - len(rows)))]
            combos = [(trial.number, space.suggest(trial)) for trial in trials]
            valid, rejected = _screen(guarded, combos)
            runner.advance(len(rejected))
            by_index = {row["index"]: row for row in [*rejected, *runner.run(valid)]}
            for trial in trials:
                row = by_index.get(trial.number)
                if row is not None and row["status"] == "ok":
                    study.tell(trial, row["score"])
                else:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
            rows.extend(by_index[t.number] for t in trials if t.number in by_index)
            if len(by_index) < len(trials):  # cancelled inside the batch
                break
        return rows
    finally:
        optuna.logging.set_verbosity(verbosity)


def _table(rows: list[dict[str, Any]], names: Sequence[str]) -> pd.DataFrame:
    records = [
        {
            **{name: row["params"].get(name) for name in names},
            "status": row["status"],
            "score": row["score"],
            "error": row.get("error"),
            **{metric: row.get(metric, math.nan) for metric in METRIC_NAMES},
        }
        for row in sorted(rows, key=lambda r: r["index"])
    ]
    columns = [*names, "status", "score", "error", *METRIC_NAMES]
    return pd.DataFrame.from_records(records, columns=columns)


def optimize(
    strategy: StrategyRef,
    candles: pd.DataFrame,
    space: ParameterSpace | Mapping[str, Any],
    *,
    method: Method = "grid",
    objective: Objective = "sharpe",
    n_trials: int = 100,
    seed: int | None = None,
    min_trades: int = 1,
    config: BacktestConfig | None = None,
    fixed_params: Mapping[str, Any] | None = None,
    workers: int | None = None,
    pool: WorkerPool | None = None,
    chunk_size: int | None = None,
    batch_size: int = 16,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> OptimizationResult:
    """Search ``space`` for the parameters of ``strategy`` that maximise ``objective`` on ``candles``.

    ``method``: ``grid`` (every combination), ``random`` (``n_trials`` seeded draws) or ``optuna``
    (``n_trials`` TPE trials, seeded, asked in batches of ``batch_size``). ``workers``: processes
    (default all cores; 1 runs here); ``pool`` reuses a :class:`WorkerPool` instead. ``progress(done,
    total)`` is called as chunks complete; setting ``cancel`` stops the search between chunks and
    the result holds what was done (``cancelled=True``). Raises ValidationFailed for a bad space or
    option.
    """
    started = time.perf_counter()
    _check_options(method, objective, n_trials, min_trades, workers)
    if not isinstance(space, ParameterSpace):
        space = ParameterSpace.from_specs(strategy, space, fixed=fixed_params)
    config = config or BacktestConfig()
    strategy_class = resolve_strategy(strategy)
    guarded = loader.guard(strategy_class)
    ref: StrategyRef = strategy if isinstance(strategy, str) else strategy_class
    worker_count = pool.workers if pool is not None else max(1, workers or os.cpu_count() or 1)
    if method == "grid":
        combos = space.grid()
    elif method == "random":
        combos = space.sample(n_trials, seed=seed)
    else:
        combos = []
    total = len(combos) if method != "optuna" else n_trials
    task = _Task(ref, None, (), config, objective, min_trades)
    if pool is not None:
        task = dataclasses.replace(task, candles_key=pool.install(candles))
    own_executor: futures.ProcessPoolExecutor | None = None
    if pool is None and worker_count > 1:
        own_executor = futures.ProcessPoolExecutor(
            max_workers=worker_count,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_install_candles,
            initargs=(candles,),
        )
    elif pool is None:
        task = dataclasses.replace(task, candles=candles)
    executor = pool.executor if pool is not None else own_executor
    runner = _Runner(task, executor, worker_count, chunk_size, progress, cancel, total)
    try:
        if method == "optuna":
            rows = _optuna_rows(space, runner, guarded, n_trials=n_trials, seed=seed, batch_size=batch_size)
        else:
            valid, rows = _screen(guarded, enumerate(combos))
            runner.advance(len(rows))
            rows = rows + runner.run(valid)
    finally:
        if own_executor is not None:
            own_executor.shutdown(wait=True, cancel_futures=True)
    table = _table(rows, [*space.fixed, *space.names])
    return _result(strategy_class.name, method, objective, rows, table, total, runner.cancelled, started)


def _result(
    name: str,
    method: str,
    objective: str,
    rows: list[dict[str, Any]],
    table: pd.DataFrame,
    total: int,
    cancelled: bool,
    started: float,
) -> OptimizationResult:
    best: dict[str, Any] | None = None
    for row in sorted(rows, key=lambda r: r["index"]):
        # Strictly greater: the first of equal scores wins, whatever order the chunks came back.
        if row["status"] == "ok" and (best is None or row["score"] > best["score"]):
            best = row
    statuses = [row["status"] for row in rows]
    return OptimizationResult(
        strategy=name,
        method=method,
        objective=objective,
        best_params=dict(best["params"]) if best else None,
        best_score=best["score"] if best else -math.inf,
        table=table,
        total=total,
        evaluated=statuses.count("ok"),
        skipped=statuses.count("skipped"),
        failed=statuses.count("failed"),
        cancelled=cancelled,
        elapsed_seconds=time.perf_counter() - started,
    )


def backtest_params(
    strategy: StrategyRef,
    candles: pd.DataFrame,
    params: Mapping[str, Any],
    config: BacktestConfig | None = None,
) -> BacktestResult:
    """One backtest of ``strategy`` with ``params`` on ``candles`` (what each evaluation runs)."""
    return run_backtest(candles, strategy_signals(strategy, candles, params), config or BacktestConfig())
