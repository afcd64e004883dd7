"""`cryptoorchestrator data`: download with a progress bar, import, list."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from cryptoorchestrator.bootstrap import build_container
from cryptoorchestrator.cli.data import expand_multi_value_options, run_download
from cryptoorchestrator.core.clock import SimClock
from cryptoorchestrator.exchanges.client import CcxtExchangeClient
from cryptoorchestrator.exchanges.ratelimit import RateBudgetRegistry
from cryptoorchestrator.testing.fake_exchange import FakeBinance
from cryptoorchestrator.testing.fake_exchange_venue import SimulatedBinanceSpot
from tests.conftest import make_settings
from tests.integration.cli.test_cli import cli

pytestmark = pytest.mark.integration


def test_the_issue_command_line_is_understood():
    argv = (
        "data download --exchange binance --symbols BTC/USDT ETH/USDT --timeframes 1m 1h --since 2024-01-01"
    )
    assert expand_multi_value_options(argv.split()) == [
        "data", "download", "--exchange", "binance",
        "--symbols", "BTC/USDT", "--symbols", "ETH/USDT",
        "--timeframes", "1m", "--timeframes", "1h", "--since", "2024-01-01",
    ]  # fmt: skip


async def test_download_shows_progress_and_a_summary(tmp_path):
    clock = SimClock(1_735_689_600)
    venue = SimulatedBinanceSpot(clock=clock, candle_count=1500)
    registry = RateBudgetRegistry()
    container = build_container(
        make_settings(tmp_path),
        clock=clock,
        exchange_factory=lambda name: CcxtExchangeClient(FakeBinance(venue=venue), budget_registry=registry),
    )
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=False)
    try:
        results = await run_download(
            container,
            exchange="binance",
            symbols=["BTCUSDT", "ETH/USDT"],
            timeframes=["1h"],
            since_ms=(1_735_689_600 - 1200 * 3600) * 1000,
            until_ms=None,
            console=console,
        )
    finally:
        await container.close()
    text = buffer.getvalue()
    assert "100%" in text
    assert "BTC/USDT" in text and "ETH/USDT" in text
    assert [r.fetched for r in results] == [1200, 1200]
    assert {d.symbol for d in container.market_data.datasets()} == {"BTC/USDT", "ETH/USDT"}


def test_download_without_network_fails_with_a_clear_message(tmp_path):
    args = [
        "data",
        "download",
        "--exchange",
        "binance",
        "--symbols",
        "BTC/USDT",
        "ETH/USDT",
        "--since",
        "2024-01-01",
    ]
    result = cli(*args, env={"CO_DATA_DIR": str(tmp_path), "CO_EXCHANGE_TIMEOUT_MS": "2000"})
    assert result.returncode == 1
    assert "Error:" in result.stderr and "binance" in result.stderr
    assert "Traceback" not in result.stderr


def test_import_and_list(tmp_path):
    csv = tmp_path / "btc.csv"
    csv.write_text(
        "timestamp,open,high,low,close,volume\n1704067200000,1,2,0.5,1.5,10\n1704070800000,1.5,2,1,1.8,5\n"
    )
    env = {"CO_DATA_DIR": str(tmp_path / "data")}
    imported = cli("data", "import", str(csv), "--symbol", "BTCUSDT", "--timeframe", "1h", env=env)
    assert imported.returncode == 0, imported.stderr
    assert "Imported 2 candles of BTC/USDT 1h (binance)" in imported.stdout
    listed = cli("data", "list", env=env)
    assert "BTC/USDT" in listed.stdout and "import" in listed.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "timestamp,open,high,low,close,volume\n1704067200000,1,2,0.5,1.5,10\n1704070800000,1.5,1,2,1.8,-5\n"
    )
    refused = cli("data", "import", str(bad), "--symbol", "BTCUSDT", "--timeframe", "1h", env=env)
    assert refused.returncode == 1
    assert "row 2" in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    missing = cli(
        "data", "import", str(tmp_path / "nope.csv"), "--symbol", "X/Y", "--timeframe", "1h", env=env
    )
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
