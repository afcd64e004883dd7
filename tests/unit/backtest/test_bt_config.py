"""Invalid backtest configs and inputs raise ValidationFailed naming the field."""

from __future__ import annotations

import numpy as np
import pytest

from cryptoorchestrator.backtest.engine import BacktestConfig, run_backtest
from cryptoorchestrator.core.errors import ValidationFailed

from ._bt_support import synthetic_candles


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("initial_cash", {"initial_cash": 0.0}),
        ("initial_cash", {"initial_cash": float("nan")}),
        ("fill_at", {"fill_at": "midday"}),
        ("sizing", {"sizing": "kelly"}),
        ("size", {"size": -1.0}),
        ("size", {"sizing": "percent_equity", "size": 1.5}),
        ("leverage", {"leverage": 0.5}),
        ("maintenance_margin_rate", {"leverage": 10.0, "maintenance_margin_rate": 0.2}),
        ("stop_loss", {"stop_loss": 1.5}),
        ("stop_loss", {"sizing": "risk", "size": 0.01}),
        ("take_profit", {"take_profit": 0.0}),
        ("trailing_stop", {"trailing_stop": -0.1}),
        ("taker_fee", {"taker_fee": 0.5}),
        ("maker_fee", {"maker_fee": -0.001}),
        ("slippage", {"slippage": "random"}),
        ("slippage_bps", {"slippage_bps": -1.0}),
        ("quantity_step", {"quantity_step": -0.1}),
        ("min_notional", {"min_notional": float("inf")}),
        ("timeframe", {"timeframe": "5 minutes"}),
    ],
)
def test_bt_invalid_config_names_the_field(field: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationFailed) as info:
        BacktestConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.details["field"] == field


def test_bt_config_is_frozen() -> None:
    config = BacktestConfig()
    with pytest.raises(AttributeError):
        config.size = 2.0  # type: ignore[misc]


def test_bt_bad_inputs_are_refused() -> None:
    candles = synthetic_candles(50)
    ok = {"entry_long": np.zeros(50, dtype=bool)}
    config = BacktestConfig()
    with pytest.raises(ValidationFailed, match="entry_long"):
        run_backtest(candles, {"entry_long": np.zeros(49, dtype=bool)}, config)
    with pytest.raises(ValidationFailed, match="boolean"):
        run_backtest(candles, {"entry_long": np.zeros(50)}, config)
    with pytest.raises(ValidationFailed, match="unknown"):
        run_backtest(candles, {"buy": np.zeros(50, dtype=bool)}, config)
    bad = dict(candles)
    bad["close"] = bad["close"].copy()
    bad["close"][3] = np.nan
    with pytest.raises(ValidationFailed, match="close"):
        run_backtest(bad, ok, config)
    with pytest.raises(ValidationFailed, match="missing"):
        run_backtest({k: v for k, v in candles.items() if k != "volume"}, ok, config)
