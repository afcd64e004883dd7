"""`cryptoorchestrator backtest` as a user runs it: progress, summary, HTML report, clear errors."""

from __future__ import annotations

import pytest

from tests.integration.cli.test_cli import cli

pytestmark = pytest.mark.integration

CSV_HEADER = "timestamp,open,high,low,close,volume\n"


def _csv(path, count: int = 600) -> None:
    import math

    rows = []
    for i in range(count):
        price = 100 + 10 * math.sin(i / 15) + i * 0.01
        rows.append(
            f"{1704067200000 + i * 3_600_000},{price},{price + 1},{price - 1},{price + 0.5},{10 + i % 7}"
        )
    path.write_text(CSV_HEADER + "\n".join(rows) + "\n")


def test_backtest_command_with_report(tmp_path):
    env = {"CO_DATA_DIR": str(tmp_path / "data")}
    csv = tmp_path / "eth.csv"
    _csv(csv)
    assert (
        cli("data", "import", str(csv), "--symbol", "ETH/USDT", "--timeframe", "1h", env=env).returncode == 0
    )
    report = tmp_path / "report.html"
    result = cli(
        "backtest",
        "--strategy",
        "sma_cross",
        "--symbol",
        "ETHUSDT",
        "--timeframe",
        "1h",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-25",
        "--param",
        "fast=5",
        "--param",
        "slow=20",
        "--report",
        str(report),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "Sharpe" in result.stdout and "Total return" in result.stdout and "100%" in result.stdout
    html = report.read_text()
    assert "Plotly" in html and "Max drawdown" in html
    check = cli(
        "backtest",
        "check-lookahead",
        "--strategy",
        "sma_cross",
        "--symbol",
        "ETH/USDT",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-25",
        env=env,
    )
    assert check.returncode == 0 and "No look-ahead" in check.stdout


def test_backtest_command_errors_are_clear(tmp_path):
    env = {"CO_DATA_DIR": str(tmp_path / "data")}
    csv = tmp_path / "eth.csv"
    _csv(csv, 100)
    cli("data", "import", str(csv), "--symbol", "ETH/USDT", "--timeframe", "1h", env=env)
    cases = [
        (
            ["--strategy", "nope", "--symbol", "ETH/USDT", "--start", "2024-01-01", "--end", "2024-01-03"],
            "No strategy",
        ),
        (
            [
                "--strategy",
                "sma_cross",
                "--symbol",
                "ETH/USDT",
                "--start",
                "2030-01-01",
                "--end",
                "2030-02-01",
            ],
            "stored",
        ),
        (["--strategy", "sma_cross", "--symbol", "ETH/USDT"], "Missing --start, --end"),
        (
            ["--strategy", "sma_cross", "--symbol", "ETH/USDT", "--start", "soon", "--end", "2024-02-01"],
            "--start",
        ),
        (
            [
                "--strategy",
                "sma_cross",
                "--symbol",
                "ETH/USDT",
                "--start",
                "2024-01-01",
                "--end",
                "2024-01-03",
                "--param",
                "fast",
            ],
            "name=value",
        ),
    ]
    for args, message in cases:
        result = cli("backtest", *args, env=env)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_optimize_command(tmp_path):
    env = {"CO_DATA_DIR": str(tmp_path / "data")}
    csv = tmp_path / "eth.csv"
    _csv(csv)
    cli("data", "import", str(csv), "--symbol", "ETH/USDT", "--timeframe", "1h", env=env)
    args = "backtest optimize --strategy sma_cross --symbol ETH/USDT --start 2024-01-01 --end 2024-01-25"
    result = cli(
        *args.split(),
        "--space",
        "fast=3:9:3",
        "--space",
        "slow=20,30",
        "--workers",
        "1",
        "--min-trades",
        "0",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "6 evaluated" in result.stdout and "Best: {'fast'" in result.stdout
    analysed = cli(
        *args.split(),
        "--space",
        "fast=3:9:3",
        "--space",
        "slow=20,30",
        "--workers",
        "1",
        "--min-trades",
        "0",
        "--walk-forward",
        "300:100",
        "--monte-carlo",
        "200",
        "--seed",
        "1",
        env=env,
    )
    assert analysed.returncode == 0, analysed.stderr
    assert "Walk-forward: 2 windows" in analysed.stdout and "Parameter stability" in analysed.stdout
    assert "Monte Carlo: 200 resamplings" in analysed.stdout
    bad = cli(*args.split(), "--space", "fast=lots", env=env)
    assert bad.returncode == 1 and "--space" in bad.stderr and "Traceback" not in bad.stderr
