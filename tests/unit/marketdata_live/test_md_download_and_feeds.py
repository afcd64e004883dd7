"""Downloads (paging, resume, closed candles only, faults) and the live feeds (replay, polling)."""

from __future__ import annotations

import pandas as pd
import pytest

from cryptoorchestrator.core.clock import SimClock
from cryptoorchestrator.core.errors import ExchangeUnavailable, InvalidDateRange, NotFound
from cryptoorchestrator.exchanges.client import CcxtExchangeClient
from cryptoorchestrator.exchanges.ratelimit import RateBudgetRegistry, RetryPolicy
from cryptoorchestrator.marketdata.download import download_candles
from cryptoorchestrator.marketdata.live import PollingFeed, ReplayFeed
from cryptoorchestrator.marketdata.store import CandleStore
from cryptoorchestrator.testing.fake_exchange import FakeBinance, FaultKind
from cryptoorchestrator.testing.fake_exchange_venue import SimulatedBinanceSpot

HOUR = 3_600_000
NOW_S = 1_735_689_600  # 2025-01-01T00:00:00Z


class FakeSleep:
    """Advances the SimClock instead of sleeping."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(max(seconds, 0))


@pytest.fixture
def clock() -> SimClock:
    return SimClock(NOW_S + 1800)  # half-way through a forming hourly candle


@pytest.fixture
def venue(clock) -> SimulatedBinanceSpot:
    return SimulatedBinanceSpot(clock=clock, candle_count=3000)


@pytest.fixture
def fake(venue) -> FakeBinance:
    return FakeBinance(venue=venue)


@pytest.fixture
async def client(fake, clock):
    sleep = FakeSleep(clock)
    registry = RateBudgetRegistry(clock=clock, sleep=sleep)
    exchange = CcxtExchangeClient(fake, budget_registry=registry, retry_policy=RetryPolicy(max_attempts=4))
    yield exchange
    await exchange.close()


@pytest.fixture
def store(tmp_path) -> CandleStore:
    return CandleStore(tmp_path / "candles")


async def test_download_pages_and_stores_only_closed_candles(client, store, clock, venue):
    now_ms = int(clock.timestamp() * 1000)
    reports: list[float] = []

    async def progress(percent: float, message: str) -> None:
        reports.append(percent)

    result = await download_candles(
        client, store, symbol="BTC/USDT", timeframe="1h", since_ms=now_ms - 2500 * HOUR, until_ms=None,
        now_ms=now_ms, progress=progress, page_limit=1000,
    )  # fmt: skip
    assert result.pages >= 3
    stored = store.read("binance", "BTC/USDT", "1h")
    assert len(stored) == result.fetched == result.added
    assert int(stored["timestamp"].iloc[-1]) + HOUR <= now_ms, "the forming candle is never stored"
    assert stored["timestamp"].is_monotonic_increasing and stored["timestamp"].is_unique
    served = {row[0]: row for row in venue.candles("BTC/USDT", "1h")}
    last = stored.iloc[-1]
    assert float(served[int(last["timestamp"])][4]) == last["close"]
    assert reports == sorted(reports) and reports[-1] == 100.0
    assert store.info("binance", "BTC/USDT", "1h").source == "exchange"


async def test_download_resumes_from_the_last_stored_candle(client, store, clock):
    now_ms = int(clock.timestamp() * 1000)
    window = {"since_ms": now_ms - 100 * HOUR, "until_ms": now_ms - 50 * HOUR, "now_ms": now_ms}
    first = await download_candles(client, store, symbol="ETH/USDT", timeframe="1h", **window)
    assert first.fetched == 50
    second = await download_candles(
        client,
        store,
        symbol="ETH/USDT",
        timeframe="1h",
        since_ms=now_ms - 100 * HOUR,
        until_ms=None,
        now_ms=now_ms,
    )
    assert second.resumed is True
    assert second.started_from_ms == first.last_ms + HOUR
    assert second.fetched == 49  # up to the last closed candle
    assert len(store.read("binance", "ETH/USDT", "1h")) == 99


async def test_download_survives_transient_faults(client, fake, store, clock):
    exchange = fake
    exchange.inject(FaultKind.SERVER_ERROR, times=1, path_contains="/klines", status=503)
    exchange.inject(FaultKind.RATE_LIMITED, times=1, path_contains="/klines", retry_after=2)
    now_ms = int(clock.timestamp() * 1000)
    result = await download_candles(
        client,
        store,
        symbol="BTC/USDT",
        timeframe="1h",
        since_ms=now_ms - 10 * HOUR,
        until_ms=None,
        now_ms=now_ms,
    )
    assert result.fetched == 9
    assert len(exchange.requests_to("/klines")) >= 3


async def test_download_gives_up_cleanly_when_the_exchange_stays_down(client, fake, store, clock):
    fake.inject(FaultKind.SERVER_ERROR, times=None, path_contains="/klines", status=502)
    now_ms = int(clock.timestamp() * 1000)
    with pytest.raises(ExchangeUnavailable):
        await download_candles(
            client,
            store,
            symbol="BTC/USDT",
            timeframe="1h",
            since_ms=now_ms - 10 * HOUR,
            until_ms=None,
            now_ms=now_ms,
        )
    assert not store.exists("binance", "BTC/USDT", "1h"), "nothing half-written"


async def test_download_refuses_an_empty_window(client, store, clock):
    now_ms = int(clock.timestamp() * 1000)
    with pytest.raises(InvalidDateRange):
        await download_candles(
            client,
            store,
            symbol="BTC/USDT",
            timeframe="1h",
            since_ms=now_ms + HOUR,
            until_ms=None,
            now_ms=now_ms,
        )


def _series(start_ms: int, count: int) -> pd.DataFrame:
    rows = [[start_ms + i * HOUR, 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 10.0 + i] for i in range(count)]
    return pd.DataFrame(rows, columns=["timestamp", "open", "high", "low", "close", "volume"])


async def test_replay_feed_emits_candles_as_they_close(store):
    store.append("binance", "BTC/USDT", "1h", _series(0, 5), source="import")
    clock = SimClock(1000.0)
    sleep = FakeSleep(clock)
    feed = ReplayFeed(store, clock, speed=60.0, sleep=sleep)
    seen = [candle async for candle in feed.subscribe("binance", "BTC/USDT", "1h")]
    assert [c.timestamp for c in seen] == [i * HOUR for i in range(5)]
    assert {c.source for c in seen} == {"replay"}
    assert seen[2].close == 102.5
    # One hour of market time per minute of wall time at speed 60.
    assert sum(sleep.calls) == pytest.approx(5 * 60.0)


async def test_replay_of_synthetic_data_says_so(store):
    store.append("synthetic", "ETH/USDT", "1h", _series(0, 2), source="synthetic")
    clock = SimClock(0.0)
    feed = ReplayFeed(store, clock, speed=3600.0, sleep=FakeSleep(clock))
    assert {c.source async for c in feed.subscribe("synthetic", "ETH/USDT", "1h")} == {"synthetic"}


async def test_replay_of_missing_data_is_not_found(store):
    feed = ReplayFeed(store, SimClock(0.0))
    with pytest.raises(NotFound):
        async for _ in feed.subscribe("binance", "NOPE/USDT", "1h"):
            pass


async def test_polling_feed_emits_each_closed_candle_once(client, clock, venue):
    # The venue knows candles two hours into the future; each may be emitted only once closed.
    start = NOW_S * 1000 - 3 * HOUR
    venue.set_candles("BTC/USDT", "1h", _series(start, 6).values.tolist())
    sleep = FakeSleep(clock)
    feed = PollingFeed(client, clock, exchange="binance", poll_seconds=1800, sleep=sleep)
    seen = []
    async for candle in feed.subscribe("binance", "BTC/USDT", "1h"):
        seen.append(candle)
        assert candle.timestamp + HOUR <= int(clock.timestamp() * 1000), "emitted before it closed"
        if len(seen) == 4:
            break
    stamps = [c.timestamp for c in seen]
    assert stamps == [start + i * HOUR for i in range(2, 6)]  # from the last closed one at start
    assert all(c.source == "exchange" for c in seen)
