"""Fixtures for the market-data tests: a store in a temporary folder and the real-data locator."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from cryptoorchestrator.marketdata.store import CandleStore


@pytest.fixture
def store(tmp_path: Path) -> CandleStore:
    return CandleStore(tmp_path / "candles")


@pytest.fixture
def real_csv() -> Callable[[str], Path]:
    """Return a function that finds a real candle CSV under CO_DATA_DIR or skips the test."""

    def find(name: str) -> Path:
        root = os.environ.get("CO_DATA_DIR")
        if not root:
            pytest.skip("CO_DATA_DIR not set: the real candle files are not available")
        path = Path(root) / name
        if not path.is_file():
            pytest.skip(f"CO_DATA_DIR not set: {name} is missing from {root}")
        return path

    return find
