"""``cryptoorchestrator backtest``: run a strategy over stored candles, with a progress bar, a
summary table and an optional HTML report; ``backtest check-lookahead`` audits a strategy."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cryptoorchestrator.cli.data import parse_date
from cryptoorchestrator.core.errors import ValidationFailed

app = typer.Typer(
    help="Backtest a strategy over stored candles (import or download them first).",
    invoke_without_command=True,
    no_args_is_help=False,
)
out = Console(soft_wrap=True)

_METRICS = (
    ("total_return", "Total return", "pct"),
    ("annual_return", "Annual return", "pct"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("sharpe", "Sharpe", "num"),
    ("sortino", "Sortino", "num"),
    ("calmar", "Calmar", "num"),
    ("win_rate", "Win rate", "pct"),
    ("profit_factor", "Profit factor", "num"),
    ("total_trades", "Trades", "int"),
    ("exposure", "Exposure", "pct"),
)


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``fast=10 slow=30`` (values read as JSON when they parse, else as text)."""
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValidationFailed(f"--param takes name=value, got {pair!r}.")
        try:
            params[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[name.strip()] = value
    return params


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{value * 100:.2f}%"
    return f"{int(value)}" if kind == "int" else f"{value:.3f}"


def _container() -> Any:
    from cryptoorchestrator.bootstrap import build_container
    from cryptoorchestrator.config.settings import load_settings

    return build_container(load_settings())


async def run_cli_backtest(
    container: Any,
    *,
    strategy: str,
    params: dict[str, Any],
    symbol: str,
    timeframe: str,
    start_ms: int,
    end_ms: int,
    exchange: str | None,
    config: dict[str, Any],
    report: Path | None,
    console: Console,
) -> dict[str, Any]:
    """Shared by the command and its tests."""
    from cryptoorchestrator.backtest import report as report_module
    from cryptoorchestrator.backtest import runner
    from cryptoorchestrator.services.backtests import parse_config

    clean = container.strategies.validate(strategy, params)
    settings = parse_config({**config, "timeframe": timeframe})
    runner.BacktestConfig(**settings)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("loading candles", total=100)
        candles = await container.market_data.history(
            symbol,
            timeframe=timeframe,
            start_ms=start_ms,
            end_ms=end_ms,
            exchange=exchange,
            max_candles=container.settings.max_backtest_candles,
        )
        bar.update(task, completed=25, description=f"{len(candles.frame)} candles: signals and simulation")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "cli.results"
            outcome = await asyncio.to_thread(
                runner.compute,
                candles.frame,
                strategy_type=strategy,
                params=clean,
                config=settings,
                results_path=path,
            )
            bar.update(task, completed=85, description="metrics and report")
            if report is not None:
                import pandas as pd

                html = report_module.render_report(
                    title=f"{strategy} on {candles.symbol} {timeframe}",
                    candles=candles.frame,
                    equity=pd.read_parquet(path.with_suffix(".equity.parquet")),
                    trades=pd.read_parquet(path.with_suffix(".trades.parquet")),
                    metrics=outcome["metrics"],
                    summary={**outcome["summary"], "symbol": candles.symbol, "data_source": candles.source},
                )
                await asyncio.to_thread(report.write_text, html, encoding="utf-8")
        bar.update(task, completed=100, description="done")
    described = f"{candles.source} data, {len(candles.frame)} candles"
    table = Table(title=f"{strategy} on {candles.symbol} {timeframe} ({described})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label, kind in _METRICS:
        table.add_row(label, _fmt(outcome["metrics"].get(key), kind))
    table.add_row("Final equity", f"{outcome['summary']['final_equity']:.2f}")
    console.print(table)
    if not outcome["summary"]["costs_on"]:
        console.print(
            "[yellow]Costs are OFF: commission and slippage are zero; real results will be worse.[/yellow]"
        )
    if report is not None:
        console.print(f"Report written to {report}")
    return outcome


@app.callback()
def backtest(
    ctx: typer.Context,
    strategy: Annotated[
        str | None, typer.Option(help="Strategy type, e.g. sma_cross (see /strategies/types).")
    ] = None,
    symbol: Annotated[str | None, typer.Option(help="Symbol, e.g. BTC/USDT.")] = None,
    timeframe: Annotated[str, typer.Option(help="Candle timeframe.")] = "1h",
    start: Annotated[str | None, typer.Option(help="Start date (2024-03-01).")] = None,
    end: Annotated[str | None, typer.Option(help="End date (2024-09-01).")] = None,
    exchange: Annotated[
        str | None, typer.Option(help="Exchange of the stored candles (default: configured).")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Strategy parameter name=value.")
    ] = None,
    capital: Annotated[float, typer.Option(help="Initial capital.")] = 10_000.0,
    commission: Annotated[float, typer.Option(help="Commission per side (0.001 = 0.1%).")] = 0.001,
    slippage_bps: Annotated[float, typer.Option(help="Slippage in basis points.")] = 5.0,
    stop_loss: Annotated[float | None, typer.Option(help="Stop loss as a fraction (0.02 = 2%).")] = None,
    take_profit: Annotated[float | None, typer.Option(help="Take profit as a fraction.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write an HTML report with interactive charts.")] = None,
) -> None:
    """Run a backtest: `cryptoorchestrator backtest --strategy sma_cross --symbol BTC/USDT --timeframe 5m
    --start 2024-03-01 --end 2024-09-01 --report report.html`."""
    if ctx.invoked_subcommand is not None:
        return
    missing = [
        name
        for name, value in (
            ("--strategy", strategy),
            ("--symbol", symbol),
            ("--start", start),
            ("--end", end),
        )
        if value is None
    ]
    if missing:
        raise ValidationFailed(f"Missing {', '.join(missing)} (see `cryptoorchestrator backtest --help`).")
    if strategy is None or symbol is None or start is None or end is None:  # for the type checker
        raise typer.Exit(2)
    config = {
        "initial_cash": capital,
        "commission": commission,
        "slippage_bps": slippage_bps,
        "stop_loss": stop_loss,
        "take_profit": take_profit,
    }
    container = _container()

    async def run() -> None:
        try:
            await run_cli_backtest(
                container,
                strategy=strategy,
                params=parse_params(param or []),
                symbol=symbol,
                timeframe=timeframe,
                start_ms=parse_date(start, name="start"),
                end_ms=parse_date(end, name="end"),
                exchange=exchange,
                config=config,
                report=report,
                console=out,
            )
        finally:
            await container.close()

    asyncio.run(run())


@app.command("check-lookahead")
def check_lookahead(
    strategy: Annotated[str, typer.Option(help="Strategy type.")],
    symbol: Annotated[str, typer.Option(help="Symbol.")],
    start: Annotated[str, typer.Option(help="Start date.")],
    end: Annotated[str, typer.Option(help="End date.")],
    timeframe: Annotated[str, typer.Option(help="Timeframe.")] = "1h",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="name=value")] = None,
) -> None:
    """Recompute signals on truncated data and list every bar whose signal changes (look-ahead bias)."""
    from cryptoorchestrator.strategies.lookahead import check_lookahead as check

    container = _container()

    async def run() -> Any:
        try:
            candles = await container.market_data.history(
                symbol,
                timeframe=timeframe,
                start_ms=parse_date(start, name="start"),
                end_ms=parse_date(end, name="end"),
            )
            instance = container.strategies.registry.create(strategy)
            return candles, await asyncio.to_thread(check, instance, candles.frame, parse_params(param or []))
        finally:
            await container.close()

    candles, result = asyncio.run(run())
    if result.ok:
        out.print(f"[green]No look-ahead found[/green] in {strategy} over {len(candles.frame)} candles.")
        return
    changed = ", ".join(result.signals)
    out.print(f"[red]{len(result.bars)} bar(s) change when the future is hidden[/red] ({changed}):")
    for difference in result.differences[:30]:
        out.print(f"  bar {difference.bar}: {difference.signal}")
    raise typer.Exit(1)


def parse_space(items: list[str]) -> dict[str, dict[str, Any]]:
    """``fast=5:50:5`` (low:high[:step]) or ``slow=20,30,50`` (choices)."""
    space: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise ValidationFailed(f"--space takes name=low:high[:step] or name=a,b,c; got {item!r}.")
        try:
            if ":" in spec:
                parts = [json.loads(part) for part in spec.split(":")]
                if len(parts) not in (2, 3):
                    raise ValueError
                space[name] = {
                    "low": parts[0],
                    "high": parts[1],
                    **({"step": parts[2]} if len(parts) == 3 else {}),
                }
            else:
                space[name] = {"values": [json.loads(part) for part in spec.split(",")]}
        except (ValueError, json.JSONDecodeError):
            raise ValidationFailed(f"--space {item!r}: values must be numbers (or JSON).") from None
    return space


@app.command("optimize")
def optimize_command(
    strategy: Annotated[str, typer.Option(help="Strategy type.")],
    symbol: Annotated[str, typer.Option(help="Symbol.")],
    start: Annotated[str, typer.Option(help="Start date.")],
    end: Annotated[str, typer.Option(help="End date.")],
    space: Annotated[list[str], typer.Option("--space", "-s", help="fast=5:50:5 or slow=20,30,50 (repeat).")],
    timeframe: Annotated[str, typer.Option(help="Timeframe.")] = "1h",
    method: Annotated[str, typer.Option(help="grid, random or optuna.")] = "grid",
    objective: Annotated[
        str, typer.Option(help="sharpe, sortino, calmar, total_return, profit_factor, max_drawdown")
    ] = ("sharpe"),
    trials: Annotated[int, typer.Option(help="Trials for random/optuna.")] = 100,
    seed: Annotated[int | None, typer.Option(help="Seed for random/optuna.")] = None,
    workers: Annotated[int, typer.Option(help="Processes (default: all cores).")] = 0,
    min_trades: Annotated[int, typer.Option(help="Fewer closed trades scores worst.")] = 1,
    walk_forward: Annotated[
        str | None, typer.Option(help="Walk-forward windows IN:OUT in bars, e.g. 2000:500.")
    ] = None,
    monte_carlo: Annotated[
        int | None, typer.Option(help="Monte-Carlo simulations of the best run's trades.")
    ] = None,
) -> None:
    """Search a strategy's parameters on all cores and print the best combinations; optionally a
    walk-forward analysis and a Monte-Carlo resampling of the best run."""
    import os
    import threading

    from cryptoorchestrator.backtest import optimize as optimize_module
    from cryptoorchestrator.backtest.engine import BacktestConfig

    container = _container()

    async def load() -> Any:
        try:
            return await container.market_data.history(
                symbol,
                timeframe=timeframe,
                start_ms=parse_date(start, name="start"),
                end_ms=parse_date(end, name="end"),
            )
        finally:
            await container.close()

    candles = asyncio.run(load())
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=out,
    ) as bar:
        task = bar.add_task(f"{strategy} on {candles.symbol}", total=1)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, 1))

        result = optimize_module.optimize(
            strategy,
            candles.frame,
            parse_space(space),
            method=method,
            objective=objective,
            n_trials=trials,  # type: ignore[arg-type]
            seed=seed,
            min_trades=min_trades,
            config=BacktestConfig(timeframe=timeframe),
            workers=workers or os.cpu_count() or 1,
            progress=progress,
            cancel=threading.Event(),
        )
    ranked = result.table[result.table["status"] == "ok"].sort_values("score", ascending=False).head(10)
    table = Table(
        title=f"{result.evaluated} evaluated, {result.skipped} skipped, {result.failed} failed "
        f"in {result.elapsed_seconds:.1f}s ({objective})"
    )
    names = list(parse_space(space))
    for column in [*names, "score", "total_return", "max_drawdown", "total_trades"]:
        table.add_column(column, justify="right")
    for row in ranked.to_dict("records"):
        table.add_row(
            *[str(row[name]) for name in names],
            f"{row['score']:.3f}",
            _fmt(row["total_return"], "pct"),
            _fmt(row["max_drawdown"], "pct"),
            str(int(row["total_trades"])),
        )
    out.print(table)
    out.print(f"Best: {result.best_params}")
    config = BacktestConfig(timeframe=timeframe)
    if monte_carlo and result.best_params is not None:
        _print_monte_carlo(strategy, candles.frame, result.best_params, config, monte_carlo, seed)
    if walk_forward:
        _print_walk_forward(
            strategy,
            candles.frame,
            parse_space(space),
            walk_forward,
            config,
            method,
            objective,
            trials,
            seed,
            min_trades,
            workers,
        )


def _print_monte_carlo(
    strategy: str, frame: Any, params: dict[str, Any], config: Any, simulations: int, seed: int | None
) -> None:
    from cryptoorchestrator.backtest import montecarlo
    from cryptoorchestrator.backtest import optimize as optimize_module
    from cryptoorchestrator.backtest.engine import run_backtest

    best = run_backtest(frame, optimize_module.strategy_signals(strategy, frame, params), config)
    returns = montecarlo.equity_trade_returns(best)
    if not len(returns):
        out.print("Monte Carlo: the best run has no closed trades.")
        return
    summary = montecarlo.monte_carlo(returns, n_simulations=simulations, seed=seed).summary()
    table = Table(title=f"Monte Carlo: {simulations} resamplings of {len(returns)} trades")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, f"{value:.4f}")
    out.print(table)


def _print_walk_forward(
    strategy: str,
    frame: Any,
    space: dict[str, Any],
    spec: str,
    config: Any,
    method: str,
    objective: str,
    trials: int,
    seed: int | None,
    min_trades: int,
    workers: int,
) -> None:
    import os

    from cryptoorchestrator.backtest import walkforward

    try:
        in_sample, out_of_sample = (int(part) for part in spec.split(":"))
    except ValueError:
        raise ValidationFailed("--walk-forward takes IN:OUT bar counts, e.g. 2000:500.") from None
    analysis = walkforward.walk_forward(
        strategy,
        frame,
        space,
        in_sample=in_sample,
        out_of_sample=out_of_sample,
        method=method,  # type: ignore[arg-type]
        objective=objective,
        n_trials=trials,
        seed=seed,
        min_trades=min_trades,
        config=config,  # type: ignore[arg-type]
        workers=workers or os.cpu_count() or 1,
    )
    windows = analysis.table()
    params = [column for column in windows.columns if column.startswith("param_")]
    table = Table(title=f"Walk-forward: {len(windows)} windows of {in_sample} in / {out_of_sample} out bars")
    headers = [
        "window",
        *[p.removeprefix("param_") for p in params],
        "in score",
        "out score",
        "out trades",
        "equity",
    ]
    for column in headers:
        table.add_column(column, justify="right")
    for row in windows.to_dict("records"):
        table.add_row(
            str(row["index"]),
            *[str(row[p]) for p in params],
            f"{row['in_sample_score']:.3f}",
            f"{row['out_of_sample_score']:.3f}",
            str(row["out_of_sample_trades"]),
            f"{row['end_equity']:.2f}",
        )
    out.print(table)
    stability = ", ".join(
        f"{name}: {info['distinct']} distinct, most often {info['most_common']}"
        for name, info in analysis.stability.items()
    )
    metrics = analysis.metrics
    out.print(
        f"Out-of-sample (stitched): total return {metrics.total_return * 100:.2f}%, "
        f"Sharpe {metrics.sharpe:.3f}. "
        f"Parameter stability: {stability}."
    )
