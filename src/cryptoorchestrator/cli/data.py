"""``cryptoorchestrator data``: download, import and list candle datasets."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cryptoorchestrator.core.errors import CryptoOrchestratorError, ValidationFailed

app = typer.Typer(
    help="Candle data: download from an exchange, import files, list datasets.", no_args_is_help=True
)
out = Console(soft_wrap=True)


def parse_date(text: str, *, name: str) -> int:
    """2024-01-01, 2024-01-01T12:00:00Z or epoch milliseconds -> epoch milliseconds."""
    cleaned = text.strip()
    if cleaned.isdigit():
        return int(cleaned)
    try:
        moment = datetime.fromisoformat(cleaned.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(
            f"--{name} must be a date like 2024-01-01 (or ISO 8601, or epoch ms)."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _container() -> Any:
    from cryptoorchestrator.bootstrap import build_container
    from cryptoorchestrator.config.settings import load_settings

    return build_container(load_settings())


async def run_download(
    container: Any,
    *,
    exchange: str,
    symbols: list[str],
    timeframes: list[str],
    since_ms: int,
    until_ms: int | None,
    console: Console,
) -> list[Any]:
    """Download with a progress bar; shared by the command and its tests."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(f"{exchange}", total=100)

        async def progress(percent: float, message: str) -> None:
            bar.update(task, completed=percent, description=f"{exchange} {message}")

        results = await container.market_data.download(
            exchange=exchange,
            symbols=symbols,
            timeframes=timeframes,
            since_ms=since_ms,
            until_ms=until_ms,
            progress=progress,
        )
    table = Table(title="Downloaded")
    for column in ("symbol", "timeframe", "fetched", "added", "from", "to", "resumed"):
        table.add_column(column)
    for result in results:
        table.add_row(
            result.symbol,
            result.timeframe,
            str(result.fetched),
            str(result.added),
            _iso(result.first_ms),
            _iso(result.last_ms),
            "yes" if result.resumed else "no",
        )
    console.print(table)
    return list(results)


def _iso(value: int | None) -> str:
    return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M") if value is not None else "-"


@app.command("download")
def download(
    symbols: Annotated[list[str], typer.Option("--symbols", "-s", help="Symbols, e.g. BTC/USDT ETH/USDT.")],
    since: Annotated[str, typer.Option(help="Start date (2024-01-01, ISO 8601 or epoch ms).")],
    exchange: Annotated[str, typer.Option(help="ccxt exchange id.")] = "binance",
    timeframes: Annotated[
        list[str] | None, typer.Option("--timeframes", "-t", help="Timeframes, e.g. 1m 1h.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="End date (default: now).")] = None,
) -> None:
    """Download candles through ccxt, resuming from the last stored candle, with a progress bar."""
    if timeframes is None:
        timeframes = ["1h"]
    since_ms = parse_date(since, name="since")
    until_ms = parse_date(until, name="until") if until else None
    container = _container()

    async def run() -> None:
        try:
            await run_download(
                container,
                exchange=exchange,
                symbols=_split(symbols),
                timeframes=_split(timeframes or ["1h"]),
                since_ms=since_ms,
                until_ms=until_ms,
                console=out,
            )
        finally:
            await container.close()

    asyncio.run(run())


#: Options that take several values in a row (``--symbols BTC/USDT ETH/USDT``).
MULTI_VALUE_OPTIONS = frozenset({"--symbols", "-s", "--timeframes", "-t"})


def expand_multi_value_options(argv: list[str]) -> list[str]:
    """Rewrite ``--symbols A B`` as ``--symbols A --symbols B`` (click options take one value)."""
    expanded: list[str] = []
    current: str | None = None
    for token in argv:
        if token.startswith("-"):
            current = token if token in MULTI_VALUE_OPTIONS else None
            expanded.append(token)
        elif current is not None and expanded and expanded[-1] != current:
            expanded.extend([current, token])
        else:
            expanded.append(token)
    return expanded


def _split(values: list[str]) -> list[str]:
    """Accept `-s A -s B`, `-s A,B` and `-s "A B"`."""
    return [part for value in values for part in value.replace(",", " ").split() if part]


@app.command("import")
def import_file(
    path: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV, JSON, feather or Parquet."),
    ],
    symbol: Annotated[str, typer.Option(help="Symbol, e.g. BTC/USDT.")],
    timeframe: Annotated[str, typer.Option(help="Timeframe of the candles, e.g. 5m.")],
    exchange: Annotated[str, typer.Option(help="Exchange the candles come from.")] = "binance",
    drop_invalid: Annotated[
        bool, typer.Option(help="Drop and count bad rows instead of refusing the file.")
    ] = False,
) -> None:
    """Import a candle file into the store (bad rows are reported with their row numbers)."""
    container = _container()
    try:
        result = container.market_data.import_data(
            path.read_bytes(),
            filename=path.name,
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            drop_invalid=drop_invalid,
        )
    except CryptoOrchestratorError as exc:
        problems = exc.details.get("problems", []) if isinstance(exc.details, dict) else []
        for problem in problems[:20]:
            out.print(f"  row {problem['row']}: {problem.get('message') or problem}")
        raise
    finally:
        asyncio.run(container.close())
    out.print(
        f"Imported {result.rows_stored} candles of {result.symbol} {result.timeframe} ({result.exchange}): "
        f"{result.rows_added} new, {result.rows_replaced} replaced, {result.rows_dropped} dropped."
    )


@app.command("list")
def list_datasets() -> None:
    """List stored datasets."""
    container = _container()
    try:
        datasets = container.market_data.datasets()
    finally:
        asyncio.run(container.close())
    table = Table(title=f"{len(datasets)} dataset(s)")
    for column in ("exchange", "symbol", "timeframe", "rows", "from", "to", "gaps", "source"):
        table.add_column(column)
    for d in datasets:
        table.add_row(
            d.exchange,
            d.symbol,
            d.timeframe,
            str(d.rows),
            _iso(d.first_ms),
            _iso(d.last_ms),
            str(d.gaps),
            d.source,
        )
    out.print(table)
