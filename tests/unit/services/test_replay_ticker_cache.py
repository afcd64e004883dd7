"""The replayed ticker (what paper orders trade against offline) is remembered while the stored
candles and the replay position stay the same, and follows either as soon as it moves."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from cryptoorchestrator.core.clock import SimClock
from cryptoorchestrator.marketdata.store import CandleStore
from cryptoorchestrator.services.market_data import MarketDataService

MINUTE = 60_000
START = 1_700_000_000_000 - 1_700_000_000_000 % MINUTE


def _candles(count: int, close: float) -> pd.DataFrame:
    stamps = [START + i * MINUTE for i in range(count)]
    closes = [close + i for i in range(count)]
    return pd.DataFrame({
        "timestamp": stamps, "open": closes, "high": [c + 1 for c in closes], "low": [c - 1 for c in closes],
        "close": closes, "volume": [1.0] * count,
    })  # fmt: skip


async def test_the_ticker_is_remembered_until_the_file_or_the_replay_position_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CandleStore(tmp_path)
    store.append("binance", "BTC/USDT", "1m", _candles(3000, 100.0))
    clock = SimClock(start=1_800_000_000.0)
    service = MarketDataService(store, clock=clock, default_exchange="binance")
    reads: list[str] = []
    read = store.read

    def counted(*args, **kwargs):
        reads.append(args[2])
        return read(*args, **kwargs)

    monkeypatch.setattr(store, "read", counted)
    first = await service.ticker("BTC/USDT")
    assert first.source == "replay" and len(reads) == 1
    again = await service.ticker("BTC/USDT")
    assert again == first and len(reads) == 1  # nothing moved: nothing read
    clock.advance(60)  # one candle of replay time later
    moved = await service.ticker("BTC/USDT")
    assert moved.last == first.last + 1 and len(reads) == 2
    store.append("binance", "BTC/USDT", "1m", _candles(3000, 500.0))  # the same candles, new prices
    rewritten = await service.ticker("BTC/USDT")
    assert rewritten.last == moved.last + Decimal(400) and len(reads) == 3
