"""Candle sources (bot_feeds F1-F3), deterministic client order ids (bot_orders O1) and the
crash hook (bot_crash): the pieces the runner's restart safety rests on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cryptoorchestrator.core.clock import SimClock
from cryptoorchestrator.marketdata.store import CandleStore
from cryptoorchestrator.services.bot_crash import CRASH_ENV, crash_point
from cryptoorchestrator.services.bot_feeds import PollingCandleSource, SteppedCandleSource, StoredCandleSource
from cryptoorchestrator.services.bot_orders import bot_prefix, client_order_id, symbol_code
from tests.integration.bots.conftest import STEP_MS, TIMEFRAME, walk

BOT = "0f7f2b5f-1c2d-4e5f-8a9b-0c1d2e3f4a5b"


async def take(stream: Any, count: int) -> list[int]:
    out = []
    async for candle in stream.candles:
        out.append(candle.timestamp)
        if len(out) == count:
            break
    return out


async def test_the_stepped_source_resumes_after_the_last_processed_candle() -> None:
    frame = walk(10)
    stamps = [int(t) for t in frame["timestamp"]]
    feed = SteppedCandleSource()
    feed.load("binance", "BTC/USDT", TIMEFRAME, frame)
    fresh = await feed.open("binance", "BTC/USDT", TIMEFRAME, after_ms=None, warmup=5)
    assert fresh.history == [] and feed.subscribers("binance", "BTC/USDT", TIMEFRAME) == 1
    await feed.step(3)
    assert await take(fresh, 3) == stamps[:3]
    await fresh.aclose()
    assert feed.subscribers("binance", "BTC/USDT", TIMEFRAME) == 0
    # F1: a bot that processed candle 1 gets candles 2.. again (2 was released, never processed).
    resumed = await feed.open("binance", "BTC/USDT", TIMEFRAME, after_ms=stamps[1], warmup=5)
    assert [c.timestamp for c in resumed.history] == stamps[:2]
    await feed.step()
    assert await take(resumed, 2) == stamps[2:4]
    await resumed.aclose()
    assert feed.remaining("binance", "BTC/USDT", TIMEFRAME) == 6


async def test_the_stored_source_replays_from_the_resume_point(tmp_path: Path) -> None:
    store = CandleStore(tmp_path / "candles")
    frame = walk(50)
    store.append("synthetic", "BTC/USDT", TIMEFRAME, frame, source="synthetic")
    stamps = [int(t) for t in frame["timestamp"]]
    clock = SimClock(0)

    async def no_wait(seconds: float) -> None:
        clock.advance(seconds)

    async def stored_as(exchange: str, symbol: str) -> tuple[str, str]:
        return "synthetic", symbol  # F3: the paper exchange's series is the synthetic one

    source = StoredCandleSource(store, clock, resolve=stored_as, sleep=no_wait)
    fresh = await source.open("binance", "BTC/USDT", TIMEFRAME, after_ms=None, warmup=10)
    assert [c.timestamp for c in fresh.history] == stamps[:10]
    first = [c async for c in fresh.candles]
    assert [c.timestamp for c in first] == stamps[10:]
    assert {(c.exchange, c.symbol, c.source) for c in first} == {("binance", "BTC/USDT", "synthetic")}
    resumed = await source.open("binance", "BTC/USDT", TIMEFRAME, after_ms=stamps[20], warmup=10)
    assert [c.timestamp for c in resumed.history] == stamps[11:21]
    assert await take(resumed, 2) == stamps[21:23]
    await resumed.aclose()
    done = await source.open("binance", "BTC/USDT", TIMEFRAME, after_ms=stamps[-1], warmup=10)
    assert [c async for c in done.candles] == []


class Poller:
    def __init__(self, rows: list[list[float]]) -> None:
        self.rows = rows
        self.closed = False

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str = "1m", since_ms: Any = None, limit: Any = None
    ) -> Any:
        return [row for row in self.rows if since_ms is None or row[0] >= since_ms][: limit or None]

    async def close(self) -> None:
        self.closed = True


async def test_the_polling_source_never_yields_a_candle_that_closed_before_it_looked() -> None:
    now_ms = 1_800_000_000_000
    rows = [[float(now_ms - STEP_MS * k), 1.0, 2.0, 0.5, 1.5, 10.0] for k in (4, 3, 2, 1)]
    clock = SimClock(now_ms / 1000)
    poller = Poller(list(rows))

    async def tick(seconds: float) -> None:
        clock.advance(STEP_MS / 1000)
        poller.rows.append([float(poller.rows[-1][0] + STEP_MS), 1.0, 2.0, 0.5, 1.5, 10.0])

    source = PollingCandleSource(lambda exchange: poller, clock, poll_seconds=1, sleep=tick)
    stream = await source.open("binance", "BTC/USDT", TIMEFRAME, after_ms=None, warmup=3)
    assert [c.timestamp for c in stream.history] == [int(r[0]) for r in rows[1:4]]
    [first] = await take(stream, 1)
    assert first == now_ms  # the candle open when it looked, once closed: nothing older
    await stream.aclose()
    await source.aclose()
    assert poller.closed


def test_client_order_ids_are_deterministic_short_and_tagged() -> None:
    first = client_order_id(BOT, 1_700_000_100_000, "BTC/USDT", "el")
    assert first == client_order_id(BOT, 1_700_000_100_000, "BTC/USDT", "el")
    assert first.startswith(bot_prefix(BOT)) and first.endswith("-BTCUSDT-el")
    assert first != client_order_id(BOT, 1_700_000_100_000 + STEP_MS, "BTC/USDT", "el")
    long_one = client_order_id(BOT, 4_102_444_800_000, "1000SHIB/USDT:USDT", "ra12")
    assert len(long_one) <= 36  # Binance's limit
    assert symbol_code("1000SHIB/USDT") != symbol_code("1000SHIB/USDC")
    assert all(ch.isalnum() or ch == "-" for ch in long_one)


def test_the_crash_hook_is_inert_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CRASH_ENV, raising=False)
    crash_point("after_send")
    monkeypatch.setenv(CRASH_ENV, "after_answer:2")
    crash_point("after_send")  # another point: nothing


def test_the_crash_hook_exits_like_kill_9_at_the_nth_time() -> None:
    code = (
        "from cryptoorchestrator.services.bot_crash import crash_point\n"
        "for _ in range(3):\n"
        "    crash_point('after_send')\n"
        "    print('alive', flush=True)\n"
    )
    env = {**os.environ, CRASH_ENV: "after_send:2"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 137
    assert result.stdout.split() == ["alive"]
