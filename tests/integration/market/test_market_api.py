"""The market-data API end to end: synthetic first-run data, klines, tickers, books, imports,
downloads as jobs through the real ccxt code path against the fake exchange."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from cryptoorchestrator.exchanges.client import CcxtExchangeClient
from cryptoorchestrator.exchanges.ratelimit import RateBudgetRegistry
from cryptoorchestrator.testing.api import assert_error, register_user
from cryptoorchestrator.testing.fake_exchange import FakeBinance
from cryptoorchestrator.testing.fake_exchange_venue import SimulatedBinanceSpot
from cryptoorchestrator.testing.ownership import OwnedRoute, assert_owner_only
from tests.conftest import client_for

pytestmark = pytest.mark.integration

HOUR = 3_600_000


@pytest.fixture
def venue(clock):
    return SimulatedBinanceSpot(clock=clock, candle_count=500)


@pytest.fixture
async def market_app(app_factory, venue, clock):
    registry = RateBudgetRegistry()

    def factory(name: str) -> CcxtExchangeClient:
        return CcxtExchangeClient(FakeBinance(venue=venue), budget_registry=registry)

    app, container = await app_factory(synthetic_data=True, exchange_factory=factory)
    return app, container


@pytest.fixture
async def market(market_app):
    app, _ = market_app
    async with client_for(app) as http:
        user = await register_user(http, "trader")
        http.headers.update(user.headers)
        yield http


async def test_first_run_has_labelled_synthetic_markets(market):
    body = (await market.get("/api/v1/markets")).json()
    symbols = {(m["exchange"], m["symbol"]): m for m in body["items"]}
    assert ("synthetic", "BTC/USDT") in symbols
    assert symbols[("synthetic", "BTC/USDT")]["source"] == "synthetic"
    assert "1h" in symbols[("synthetic", "BTC/USDT")]["timeframes"]
    datasets = (await market.get("/api/v1/market-data/datasets")).json()
    assert {d["source"] for d in datasets["items"]} == {"synthetic"}


@pytest.mark.parametrize("symbol", ["BTC/USDT", "BTC-USDT", "BTC_USDT", "BTCUSDT", "btcusdt"])
async def test_klines_accept_every_symbol_form(market, symbol):
    response = await market.get(f"/api/v1/market/klines/{symbol}", params={"interval": "1h", "limit": 10})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["symbol"] == "BTC/USDT"
    assert body["source"] == "synthetic"
    assert body["count"] == 10 == len(body["data"])
    assert body["has_more"] is True
    candle = body["data"][0]
    assert candle["timestamp"].endswith("Z")
    for field in ("open", "high", "low", "close", "volume"):
        assert isinstance(candle[field], str)
        Decimal(candle[field])
    stamps = [c["timestamp"] for c in body["data"]]
    assert stamps == sorted(stamps)


async def test_klines_range_and_resampling(market):
    hourly = (await market.get("/api/v1/market/klines/BTCUSDT", params={"interval": "1h", "limit": 8})).json()
    start = hourly["data"][0]["timestamp"]
    four = await market.get(
        "/api/v1/market/klines/BTCUSDT",
        params={"interval": "4h", "limit": 5, "start_time": "2023-01-01T00:00:00Z"},
    )
    body = four.json()
    assert body["resampled_from"] == "1h"
    assert body["data"][0]["timestamp"] == "2023-01-01T00:00:00Z"
    source = (
        await market.get(
            "/api/v1/market/klines/BTCUSDT",
            params={"interval": "1h", "limit": 4, "start_time": "1672531200000"},
        )
    ).json()["data"]
    first = body["data"][0]
    assert first["open"] == source[0]["open"]
    assert first["close"] == source[3]["close"]
    assert Decimal(first["high"]) == max(Decimal(c["high"]) for c in source)
    assert Decimal(first["low"]) == min(Decimal(c["low"]) for c in source)
    assert start


async def test_seed_001_aliases(market):
    recent = await market.get("/api/v1/market-data/BTCUSDT", params={"timeframe": "1h", "limit": 3})
    assert recent.status_code == 200 and recent.json()["count"] == 3
    history = await market.get(
        "/api/v1/market-data/BTC/USDT/history",
        params={"timeframe": "1d", "start_time": "2023-01-01", "end_time": "2023-01-11", "limit": 5000},
    )
    body = history.json()
    assert body["count"] == 10 and body["resampled_from"] == "1h"
    assert body["start_time"] == "2023-01-01T00:00:00Z"
    unversioned = await market.get("/api/market-data/BTCUSDT", params={"timeframe": "1h", "limit": 3})
    assert unversioned.json()["data"] == recent.json()["data"]


async def test_ticker_and_order_book(market):
    ticker = (await market.get("/api/v1/market/ticker/ETHUSDT")).json()
    assert ticker["symbol"] == "ETH/USDT" and ticker["source"] == "synthetic"
    assert Decimal(ticker["bid"]) < Decimal(ticker["last"]) < Decimal(ticker["ask"])
    assert Decimal(ticker["low"]) <= Decimal(ticker["last"]) <= Decimal(ticker["high"])
    book = (await market.get("/api/v1/market-data/ETH-USDT/orderbook", params={"limit": 5})).json()
    assert book["source"] == "synthetic"
    bids = [Decimal(p) for p, _ in book["bids"]]
    asks = [Decimal(p) for p, _ in book["asks"]]
    assert len(bids) == len(asks) == 5
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
    assert bids[0] < asks[0]


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/api/v1/market/klines/DOGEUSDT", {}, 404, "INVALID_SYMBOL"),
        ("/api/v1/market/ticker/NOPE", {}, 404, "INVALID_SYMBOL"),
        ("/api/v1/market/klines/BTCUSDT", {"interval": "7m"}, 422, "INVALID_TIMEFRAME"),
        ("/api/v1/market/klines/BTCUSDT", {"limit": 1001}, 422, "VALIDATION_ERROR"),
        ("/api/v1/market/klines/BTCUSDT", {"start_time": "2024-02-01", "end_time": "2024-01-01"}, 422,
         "INVALID_DATE_RANGE"),
        ("/api/v1/market/klines/BTCUSDT", {"start_time": "yesterday"}, 422, "VALIDATION_ERROR"),
        ("/api/v1/market-data/BTCUSDT/history", {"timeframe": "1h", "limit": 5001}, 422, "VALIDATION_ERROR"),
        ("/api/v1/market-data/BTCUSDT/orderbook", {"limit": 0}, 422, "VALIDATION_ERROR"),
        ("/api/v1/market/klines/BTCUSDT", {"interval": "1m"}, 404, "NOT_FOUND"),
    ],
)  # fmt: skip
async def test_bad_requests(market, path, params, status, code):
    error = assert_error(await market.get(path, params=params), status, code)
    if code == "INVALID_SYMBOL":
        assert "BTC/USDT" in error["details"]["supported"]
    if code == "INVALID_TIMEFRAME":
        assert "1h" in error["details"]["supported"]


async def test_market_data_needs_authentication(market_app):
    app, _ = market_app
    async with client_for(app) as anonymous:
        assert_error(await anonymous.get("/api/v1/markets"), 401, "UNAUTHORIZED")


CSV = b"""timestamp,open,high,low,close,volume
1704067200000,2300.5,2310,2295.25,2305,10.5
1704067260000,2305,2306,2301,2302,3.25
1704067320000,2302,2304,2299,2303.75,7
"""

BAD_CSV = b"""timestamp,open,high,low,close,volume
1704067200000,2300.5,2310,2295.25,2305,10.5
1704067260000,2305,2300,2301,2302,3.25
1704067320000,2302,2304,2299,2303.75,-7
"""


async def test_import_then_read_back(market):
    response = await market.post(
        "/api/v1/market-data/import",
        files={"file": ("eth.csv", CSV, "text/csv")},
        data={"symbol": "ETHUSDT", "timeframe": "1m", "exchange": "binance"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["rows_stored"] == 3 and body["symbol"] == "ETH/USDT" and body["problem_count"] == 0
    candles = (
        await market.get("/api/v1/market/klines/ETH-USDT", params={"interval": "1m", "exchange": "binance"})
    ).json()
    assert candles["source"] == "replay"
    assert [c["close"] for c in candles["data"]] == ["2305", "2302", "2303.75"]
    assert candles["data"][0]["low"] == "2295.25"


async def test_bad_rows_are_refused_with_row_numbers_and_nothing_is_kept(market):
    before = (await market.get("/api/v1/market-data/datasets")).json()["total"]
    response = await market.post(
        "/api/v1/market-data/import",
        files={"file": ("eth.csv", BAD_CSV, "text/csv")},
        data={"symbol": "ETH/USDT", "timeframe": "1m"},
    )
    error = assert_error(response, 422, "INVALID_DATA")
    rows = {problem["row"] for problem in error["details"]["problems"]}
    assert rows == {2, 3}
    assert (await market.get("/api/v1/market-data/datasets")).json()["total"] == before
    dropped = await market.post(
        "/api/v1/market-data/import",
        files={"file": ("eth.csv", BAD_CSV, "text/csv")},
        data={"symbol": "ETH/USDT", "timeframe": "1m", "drop_invalid": "true"},
    )
    assert dropped.status_code == 201
    assert dropped.json()["rows_dropped"] == 2 and dropped.json()["rows_stored"] == 1


async def test_import_rejects_nonsense(market):
    garbage = await market.post(
        "/api/v1/market-data/import",
        files={"file": ("x.csv", b"\x00\x01 not a csv", "text/csv")},
        data={"symbol": "ETH/USDT", "timeframe": "1m"},
    )
    assert garbage.status_code in (400, 422), garbage.text
    assert garbage.json()["error"]["code"] in ("INVALID_DATA", "VALIDATION_ERROR", "BAD_REQUEST")
    bad_tf = await market.post(
        "/api/v1/market-data/import",
        files={"file": ("eth.csv", CSV, "text/csv")},
        data={"symbol": "ETH/USDT", "timeframe": "2x"},
    )
    assert_error(bad_tf, 422, "INVALID_TIMEFRAME")
    missing = await market.post("/api/v1/market-data/import", data={"symbol": "ETH/USDT", "timeframe": "1m"})
    assert_error(missing, 422, "VALIDATION_ERROR")


async def wait_for_job(client, job_id: str, container) -> dict:
    async with asyncio.timeout(30):
        await container.job_queue.wait(job_id)
    return (await client.get(f"/api/v1/jobs/{job_id}")).json()


async def test_download_job_through_ccxt_and_resume(market, market_app, clock):
    _, container = market_app
    since = int(clock.timestamp() * 1000) - 48 * HOUR
    response = await market.post(
        "/api/v1/market-data/download",
        json={"exchange": "binance", "symbols": ["BTCUSDT"], "timeframes": ["1h"], "since": since},
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] in ("queued", "running") and job["progress_percent"] <= 100
    done = await wait_for_job(market, job["id"], container)
    assert done["status"] == "succeeded", done
    assert done["progress_percent"] == 100
    result = done["result"]["datasets"][0]
    assert result["symbol"] == "BTC/USDT" and result["fetched"] >= 47 and result["resumed"] is False
    candles = (
        await market.get(
            "/api/v1/market/klines/BTCUSDT", params={"interval": "1h", "exchange": "binance", "limit": 5}
        )
    ).json()
    assert candles["source"] == "replay" and candles["exchange"] == "binance"
    again = await market.post(
        "/api/v1/market-data/download",
        json={"exchange": "binance", "symbols": ["BTC/USDT"], "timeframes": ["1h"], "since": since},
    )
    second = await wait_for_job(market, again.json()["id"], container)
    assert second["result"]["datasets"][0]["resumed"] is True
    assert second["result"]["datasets"][0]["added"] <= 1
    listing = (await market.get("/api/v1/jobs", params={"status": "succeeded"})).json()
    assert listing["total"] == 2


async def test_download_of_unknown_symbol_fails_the_job_cleanly(market, market_app):
    _, container = market_app
    response = await market.post(
        "/api/v1/market-data/download",
        json={"symbols": ["NOPE/USDT"], "timeframes": ["1h"], "since": "2024-01-01T00:00:00Z"},
    )
    done = await wait_for_job(market, response.json()["id"], container)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "INVALID_SYMBOL"


@pytest.mark.parametrize(
    "body",
    [
        {"symbols": [], "since": "2024-01-01"},
        {"symbols": ["BTCUSDT"], "timeframes": ["9x"], "since": "2024-01-01"},
        {"symbols": ["BTCUSDT"], "since": "2024-02-01", "until": "2024-01-01"},
        {"symbols": ["BTCUSDT"]},
        {"symbols": ["BTCUSDT"], "since": "2024-01-01", "exchange": "Bad Name!"},
    ],
)
async def test_download_validation(market, body):
    response = await market.post("/api/v1/market-data/download", json=body)
    assert response.status_code == 422, response.text
    assert (await market.get("/api/v1/jobs")).json()["total"] == 0


async def test_jobs_are_owner_only_and_cancelable(market_app):
    app, container = market_app
    release = asyncio.Event()

    async def slow(context):
        await context.report(10, "waiting")
        await release.wait()
        return {"ok": True}

    container.jobs.register("test.slow", slow)
    async with client_for(app) as http:
        alice = await register_user(http, "alice")
        bob = await register_user(http, "bob")
        job = await container.jobs.submit(alice.id, "test.slow", {"n": 1})
        await asyncio.sleep(0.05)
        await assert_owner_only(
            http,
            owner_headers=alice.headers,
            intruder_headers=bob.headers,
            object_id=job.id,
            missing_id="00000000-0000-0000-0000-000000000000",
            routes=[OwnedRoute("GET", "/api/v1/jobs/{id}"), OwnedRoute("DELETE", "/api/v1/jobs/{id}")],
            check=OwnedRoute("GET", "/api/v1/jobs/{id}"),
        )
        running = (await http.get(f"/api/v1/jobs/{job.id}", headers=alice.headers)).json()
        assert running["status"] == "running" and running["progress_percent"] == 10
        canceled = await http.delete(f"/api/v1/jobs/{job.id}", headers=alice.headers)
        assert canceled.json()["status"] in ("running", "canceled")
        async with asyncio.timeout(10):
            await container.job_queue.wait(job.id)
        final = (await http.get(f"/api/v1/jobs/{job.id}", headers=alice.headers)).json()
        assert final["status"] == "canceled"
        deleted = await http.delete(f"/api/v1/jobs/{job.id}", headers=alice.headers)
        assert deleted.status_code == 204
        assert_error(await http.get(f"/api/v1/jobs/{job.id}", headers=alice.headers), 404, "NOT_FOUND")
    release.set()


async def test_user_sees_only_own_jobs(market_app):
    app, container = market_app

    async def quick(context):
        return {"ok": True}

    container.jobs.register("test.quick", quick)
    async with client_for(app) as http:
        first = await register_user(http, "first")
        second = await register_user(http, "second")
        job = await container.jobs.submit(first.id, "test.quick", {})
        async with asyncio.timeout(10):
            await container.job_queue.wait(job.id)
        assert (await http.get("/api/v1/jobs", headers=first.headers)).json()["total"] == 1
        assert (await http.get("/api/v1/jobs", headers=second.headers)).json()["total"] == 0
