"""/backtests/optimize: a parameter search as a job, with walk-forward and Monte Carlo."""

from __future__ import annotations

import asyncio

import pytest

from cryptoorchestrator.testing.api import assert_error, register_user
from tests.conftest import client_for

pytestmark = pytest.mark.integration

BODY = {
    "strategy_type": "sma_cross",
    "space": {"fast": {"low": 5, "high": 15, "step": 5}, "slow": {"values": [20, 40]}},
    "symbol": "BTC/USDT",
    "timeframe": "1h",
    "start": "2023-01-01T00:00:00Z",
    "end": "2023-07-01T00:00:00Z",
    "objective": "sharpe",
    "min_trades": 0,
}


@pytest.fixture
async def research(app_factory):
    app, container = await app_factory(synthetic_data=True, synthetic_symbols=["BTC/USDT"])
    async with client_for(app) as http:
        yield http, container


async def wait(http, container, headers, job_id: str) -> dict:
    async with asyncio.timeout(120):
        await container.job_queue.wait(job_id)
    return (await http.get(f"/api/v1/backtests/optimize/{job_id}", headers=headers)).json()


async def test_grid_search_with_walk_forward_and_monte_carlo(research):
    http, container = research
    user = await register_user(http, "optimizer")
    body = {**BODY, "walk_forward": {"in_sample": 1500, "out_of_sample": 500}, "monte_carlo": 500, "seed": 7}
    created = await http.post("/api/v1/backtests/optimize", headers=user.headers, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["status"] in ("queued", "running")
    done = await wait(http, container, user.headers, created.json()["id"])
    assert done["status"] == "succeeded", done
    assert done["progress_percent"] == 100
    result = done["result"]
    assert result["total"] == 6 and result["evaluated"] == 6 and result["skipped"] == 0
    assert result["best_params"]["fast"] in (5, 10, 15) and result["best_params"]["slow"] in (20, 40)
    scores = [row["score"] for row in result["top"]]
    assert scores == sorted(scores, reverse=True) and result["best_score"] == scores[0]
    assert result["walk_forward"]["windows"]
    assert "fast" in result["walk_forward"]["stability"]
    assert result["monte_carlo"]["final_return_p5"] <= result["monte_carlo"]["final_return_p95"]


async def test_random_and_optuna_are_reproducible(research):
    http, container = research
    user = await register_user(http, "seeded")
    outcomes = []
    for method in ("random", "random", "optuna"):
        body = {**BODY, "method": method, "n_trials": 6, "seed": 3}
        created = await http.post("/api/v1/backtests/optimize", headers=user.headers, json=body)
        outcomes.append((await wait(http, container, user.headers, created.json()["id"]))["result"])
    assert outcomes[0]["best_params"] == outcomes[1]["best_params"]
    assert outcomes[2]["method"] == "optuna" and outcomes[2]["evaluated"] + outcomes[2]["skipped"] <= 6


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"strategy_type": "nope"}, 404, "STRATEGY_NOT_FOUND"),
        ({"space": {"fast": {"low": -5, "high": 10}}}, 422, "VALIDATION_ERROR"),
        ({"space": {"unknown": {"values": [1]}}}, 422, "VALIDATION_ERROR"),
        ({"space": {}}, 422, "VALIDATION_ERROR"),
        ({"method": "brute"}, 422, "VALIDATION_ERROR"),
        ({"start": "2031-01-01", "end": "2031-02-01"}, 422, "INVALID_DATE_RANGE"),
    ],
)
async def test_bad_requests(research, change, status, code):
    http, _ = research
    user = await register_user(http, "sloppy")
    response = await http.post("/api/v1/backtests/optimize", headers=user.headers, json={**BODY, **change})
    assert_error(response, status, code)
    assert (await http.get("/api/v1/jobs", headers=user.headers)).json()["total"] == 0


async def test_optimizations_are_owner_only(research):
    http, container = research
    alice = await register_user(http, "alice")
    bob = await register_user(http, "bob")
    created = (await http.post("/api/v1/backtests/optimize", headers=alice.headers, json=BODY)).json()
    await wait(http, container, alice.headers, created["id"])
    assert_error(
        await http.get(f"/api/v1/backtests/optimize/{created['id']}", headers=bob.headers), 404, "NOT_FOUND"
    )
    missing = await http.get(
        "/api/v1/backtests/optimize/00000000-0000-0000-0000-000000000000", headers=bob.headers
    )
    assert_error(missing, 404, "NOT_FOUND")
