"""/backtests end to end on the synthetic first-run data: queue, progress, results, report, delete."""

from __future__ import annotations

import asyncio

import pytest

from cryptoorchestrator.testing.api import assert_error, register_user
from cryptoorchestrator.testing.ownership import OwnedRoute, assert_owner_only
from tests.conftest import client_for

pytestmark = pytest.mark.integration

BODY = {
    "strategy": {"type": "sma_cross", "params": {"fast": 10, "slow": 30}},
    "symbol": "BTCUSDT",
    "timeframe": "1h",
    "start": "2023-01-01T00:00:00Z",
    "end": "2023-04-01T00:00:00Z",
    "initial_capital": "10000",
    "commission": 0.001,
}


@pytest.fixture
async def research(app_factory):
    app, container = await app_factory(synthetic_data=True, synthetic_symbols=["BTC/USDT"])
    async with client_for(app) as http:
        yield http, container


async def finish(http, container, headers, backtest_id: str) -> dict:
    body = (await http.get(f"/api/v1/backtests/{backtest_id}", headers=headers)).json()
    async with asyncio.timeout(120):
        await container.job_queue.wait(body["job_id"])
    return (await http.get(f"/api/v1/backtests/{backtest_id}", headers=headers)).json()


async def test_backtest_lifecycle(research):
    http, container = research
    user = await register_user(http, "quant")
    created = await http.post("/api/v1/backtests", headers=user.headers, json=BODY)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] in ("queued", "running") and 0 <= body["progress_percent"] <= 100
    conflict = await http.get(f"/api/v1/backtests/{body['id']}/results", headers=user.headers)
    assert conflict.status_code in (200, 409)
    done = await finish(http, container, user.headers, body["id"])
    assert done["status"] == "succeeded", done
    assert done["progress_percent"] == 100
    metrics = done["metrics"]
    for key in (
        "total_return",
        "sharpe",
        "sortino",
        "max_drawdown",
        "win_rate",
        "profit_factor",
        "total_trades",
    ):
        assert key in metrics
    assert done["summary"]["candles"] == 2160 and done["summary"]["costs_on"] is True
    assert done["summary"]["data_source"] == "synthetic"

    results = (
        await http.get(f"/api/v1/backtests/{body['id']}/results?max_points=100", headers=user.headers)
    ).json()
    assert len(results["equity_curve"]) == 100
    assert results["equity_curve"][0]["equity"] == "10000"
    assert all(point["drawdown"] <= 0 for point in results["equity_curve"])
    # A position still open at the end is listed as a trade (exit_reason "open");
    # the metrics count closed trades.
    assert metrics["total_trades"] > 0
    assert results["trades_total"] in (metrics["total_trades"], metrics["total_trades"] + 1)
    trade = results["trades"][0]
    assert trade["side"] == "long" and trade["exit_reason"] in ("signal", "open")
    assert isinstance(trade["pnl"], str) and trade["entry_time"].endswith("Z")

    report = await http.get(f"/api/v1/backtests/{body['id']}/report", headers=user.headers)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "Plotly" in report.text and "Sharpe" in report.text and "BTC/USDT" in report.text

    listing = (await http.get("/api/v1/backtests", headers=user.headers)).json()
    assert listing["total"] == 1
    deleted = await http.delete(f"/api/v1/backtests/{body['id']}", headers=user.headers)
    assert deleted.status_code == 204
    assert_error(await http.get(f"/api/v1/backtests/{body['id']}", headers=user.headers), 404, "NOT_FOUND")
    assert not list(container.backtests.results_dir.glob(f"{body['id']}*"))


async def test_saved_strategy_and_costs_off_report(research):
    http, container = research
    user = await register_user(http, "saver")
    saved = (
        await http.post(
            "/api/v1/strategies",
            headers=user.headers,
            json={"name": "ema", "type": "ema_cross", "params": {}},
        )
    ).json()
    body = {**BODY, "strategy": None, "strategy_id": saved["id"], "commission": 0, "slippage_bps": 0}
    body.pop("strategy")
    created = await http.post("/api/v1/backtests", headers=user.headers, json=body)
    assert created.status_code == 201, created.text
    done = await finish(http, container, user.headers, created.json()["id"])
    assert done["strategy_type"] == "ema_cross" and done["summary"]["costs_on"] is False
    report = await http.get(f"/api/v1/backtests/{done['id']}/report", headers=user.headers)
    assert "Costs are OFF" in report.text


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"strategy": {"type": "nope"}}, 404, "STRATEGY_NOT_FOUND"),
        ({"strategy": {"type": "sma_cross", "params": {"fast": 0}}}, 422, "VALIDATION_ERROR"),
        ({"symbol": "DOGEUSDT"}, 404, "INVALID_SYMBOL"),
        ({"start": "2030-01-01", "end": "2030-02-01"}, 422, "INVALID_DATE_RANGE"),
        ({"start": "2023-03-01", "end": "2023-01-01"}, 422, "INVALID_DATE_RANGE"),
        ({"timeframe": "7m"}, 422, "INVALID_TIMEFRAME"),
        ({"commission": 0.5}, 422, "VALIDATION_ERROR"),
        ({"leverage": 0}, 422, "VALIDATION_ERROR"),
        ({"strategy_id": "x"}, 422, "VALIDATION_ERROR"),
    ],
)
async def test_bad_backtests_are_refused_before_queuing(research, change, status, code):
    http, _ = research
    user = await register_user(http, "careful")
    response = await http.post("/api/v1/backtests", headers=user.headers, json={**BODY, **change})
    error = assert_error(response, status, code)
    if code == "INVALID_DATE_RANGE" and change.get("start") == "2030-01-01":
        assert error["details"]["stored_from"].startswith("2023-01-01")
    assert (await http.get("/api/v1/backtests", headers=user.headers)).json()["total"] == 0
    assert (await http.get("/api/v1/jobs", headers=user.headers)).json()["total"] == 0


async def test_too_large_requests_are_refused(app_factory):
    app, _ = await app_factory(synthetic_data=True, synthetic_symbols=["BTC/USDT"], max_backtest_candles=1000)
    async with client_for(app) as http:
        user = await register_user(http, "greedy")
        response = await http.post("/api/v1/backtests", headers=user.headers, json=BODY)
        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert error["details"]["max_candles"] == 1000


async def test_backtests_are_owner_only(research):
    http, container = research
    alice = await register_user(http, "alice")
    bob = await register_user(http, "bob")
    created = (await http.post("/api/v1/backtests", headers=alice.headers, json=BODY)).json()
    await finish(http, container, alice.headers, created["id"])
    await assert_owner_only(
        http,
        owner_headers=alice.headers,
        intruder_headers=bob.headers,
        object_id=created["id"],
        missing_id="00000000-0000-0000-0000-000000000000",
        routes=[
            OwnedRoute("GET", "/api/v1/backtests/{id}"),
            OwnedRoute("GET", "/api/v1/backtests/{id}/results"),
            OwnedRoute("GET", "/api/v1/backtests/{id}/report"),
            OwnedRoute("DELETE", "/api/v1/backtests/{id}"),
        ],
        check=OwnedRoute("GET", "/api/v1/backtests/{id}"),
    )


async def test_backtest_runs_in_a_worker_process(app_factory):
    app, container = await app_factory(
        synthetic_data=True, synthetic_symbols=["BTC/USDT"], backtest_workers=1
    )
    async with client_for(app) as http:
        user = await register_user(http, "parallel")
        created = (await http.post("/api/v1/backtests", headers=user.headers, json=BODY)).json()
        done = await finish(http, container, user.headers, created["id"])
        assert done["status"] == "succeeded", done
    assert container.process_pool() is not None


async def test_portfolio_backtest_shares_one_capital(app_factory):
    app, container = await app_factory(
        synthetic_data=True, synthetic_symbols=["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    )
    async with client_for(app) as http:
        user = await register_user(http, "portfolio")
        body = {**BODY, "symbols": ["BTCUSDT", "ETH/USDT", "SOL-USDT"], "max_positions": 2}
        body.pop("symbol")
        created = await http.post("/api/v1/backtests", headers=user.headers, json=body)
        assert created.status_code == 201, created.text
        done = await finish(http, container, user.headers, created.json()["id"])
        assert done["status"] == "succeeded", done
        summary = done["summary"]
        assert summary["symbols"] == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
        assert summary["max_positions"] == 2
        assert sum(summary["trades_by_symbol"].values()) == summary["trades"] > 0
        results = (await http.get(f"/api/v1/backtests/{done['id']}/results", headers=user.headers)).json()
        assert {t["symbol"] for t in results["trades"]} <= {"BTC/USDT", "ETH/USDT", "SOL/USDT"}
        assert len({t["symbol"] for t in results["trades"]}) >= 2
        report = await http.get(f"/api/v1/backtests/{done['id']}/report", headers=user.headers)
        assert report.status_code == 200 and "ETH/USDT" in report.text
        both = await http.post(
            "/api/v1/backtests", headers=user.headers, json={**BODY, "symbols": ["BTCUSDT"]}
        )
        assert_error(both, 422, "VALIDATION_ERROR")
        missing = {**body, "symbols": ["BTCUSDT", "DOGEUSDT"]}
        assert_error(
            await http.post("/api/v1/backtests", headers=user.headers, json=missing), 404, "INVALID_SYMBOL"
        )
