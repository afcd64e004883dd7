"""Real exchange candles (CO_DATA_DIR): exact import round trips, gaps and resampling vs pandas.

Run with ``CO_DATA_DIR=/work/shared/data``; without it these tests skip.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoorchestrator.marketdata import timeframes as tf
from cryptoorchestrator.marketdata.importer import import_candles
from cryptoorchestrator.marketdata.resample import resample
from cryptoorchestrator.marketdata.store import CandleStore

pytestmark = pytest.mark.realdata

FILES = [
    # file, exchange, symbol, timeframe, gaps in the file (from the data README)
    ("binanceusdm_XRP-USDT_1h.csv", "binanceusdm", "XRP/USDT:USDT", "1h", 0),
    ("binance_XRP-ETH_1m.csv", "binance", "XRP/ETH", "1m", 676),
    ("bittrex_UNITTEST-BTC_1m.csv", "bittrex", "UNITTEST/BTC", "1m", 538),
    ("bitstamp-coinbase_BTC-USD_1d.csv", "bitstamp-coinbase", "BTC/USD", "1d", 0),
    ("binance_BTC-USDT_1m.csv", "binance", "BTC/USDT", "1m", 0),
]
ORACLE_RULES = {"5m": "5min", "15m": "15min", "1h": "1h"}
STORE_DTYPES = {
    "timestamp": "int64",
    "open": "float64",
    "high": "float64",
    "low": "float64",
    "close": "float64",
    "volume": "float64",
}


def read_source(path: Path) -> pd.DataFrame:
    """The CSV as pandas parses it, with the store's dtypes (some files hold integer-only volumes)."""
    return pd.read_csv(path).astype(STORE_DTYPES)


def oracle(frame: pd.DataFrame, source: str, target: str) -> pd.DataFrame:
    """pandas resample (naive UTC index, epoch origin) and drop buckets lacking any candle."""
    indexed = frame.set_index(pd.to_datetime(frame["timestamp"], unit="ms"))
    agg = indexed.resample(ORACLE_RULES[target], origin="epoch").agg(
        {"timestamp": "count", "open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    per_bucket = tf.timeframe_to_ms(target) // tf.timeframe_to_ms(source)
    complete = agg[agg["timestamp"] == per_bucket].copy()
    complete["timestamp"] = complete.index.as_unit("ms").asi8
    return complete.reset_index(drop=True)


@pytest.mark.parametrize(("name", "exchange", "symbol", "timeframe", "gaps"), FILES)
def test_real_file_round_trips_exactly(
    real_csv: Callable[[str], Path],
    tmp_path: Path,
    name: str,
    exchange: str,
    symbol: str,
    timeframe: str,
    gaps: int,
) -> None:
    path = real_csv(name)
    store = CandleStore(tmp_path)
    result = import_candles(store, path, exchange=exchange, symbol=symbol, timeframe=timeframe)
    source = read_source(path)
    assert (result.rows_read, result.rows_stored, result.rows_dropped, result.problem_count) == (
        len(source),
        len(source),
        0,
        0,
    )
    back = store.read(exchange, symbol, timeframe)
    pd.testing.assert_frame_equal(back, source, check_exact=True)  # bit-for-bit, float64 and int64
    info = store.info(exchange, symbol, timeframe)
    assert (info.rows, info.first_ms, info.last_ms) == (
        len(source),
        source["timestamp"].iloc[0],
        source["timestamp"].iloc[-1],
    )
    step = tf.timeframe_to_ms(timeframe)
    assert info.gaps == gaps == int((np.diff(source["timestamp"].to_numpy()) != step).sum())
    missing = sum(gap.missing for gap in store.gaps(exchange, symbol, timeframe))
    assert (
        missing
        == info.missing
        == (source["timestamp"].iloc[-1] - source["timestamp"].iloc[0]) // step + 1 - len(source)
    )


def test_real_range_read_matches_pandas_filter(real_csv: Callable[[str], Path], tmp_path: Path) -> None:
    path = real_csv("binance_BTC-USDT_1m.csv")
    store = CandleStore(tmp_path)
    import_candles(store, path, exchange="binance", symbol="BTC/USDT", timeframe="1m")
    source = read_source(path)
    start, end = 1_750_000_020_000, 1_752_000_000_000
    want = source[(source["timestamp"] >= start) & (source["timestamp"] < end)].reset_index(drop=True)
    got = store.read("binance", "BTC/USDT", "1m", start, end)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert len(got) > 30_000


@pytest.mark.parametrize("target", ["5m", "1h"])
def test_real_btc_minutes_resample_like_pandas(real_csv: Callable[[str], Path], target: str) -> None:
    source = read_source(real_csv("binance_BTC-USDT_1m.csv"))
    got = resample(source, "1m", target)
    want = oracle(source, "1m", target)
    assert len(got) == len(want) > 2000
    assert got["timestamp"].tolist() == want["timestamp"].tolist()
    for column in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(got[column].to_numpy(), want[column].to_numpy(), err_msg=column)
    np.testing.assert_allclose(got["volume"].to_numpy(), want["volume"].to_numpy(), rtol=1e-12, atol=0)


def test_real_minutes_with_gaps_resample_like_pandas(real_csv: Callable[[str], Path]) -> None:
    source = read_source(real_csv("bittrex_UNITTEST-BTC_1m.csv"))
    for target in ("5m", "15m", "1h"):
        got = resample(source, "1m", target)
        want = oracle(source, "1m", target)
        assert got["timestamp"].tolist() == want["timestamp"].tolist()
        np.testing.assert_array_equal(
            got[["open", "high", "low", "close"]].to_numpy(),
            want[["open", "high", "low", "close"]].to_numpy(),
        )
        np.testing.assert_allclose(got["volume"].to_numpy(), want["volume"].to_numpy(), rtol=1e-12, atol=0)
        full = (source["timestamp"].iloc[-1] - source["timestamp"].iloc[0]) // tf.timeframe_to_ms(target)
        assert 0 < len(got) < full  # the gaps cost whole buckets
