"""Loading user strategies from a directory, and the guard around strategy code."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from cryptoorchestrator.core.errors import StrategyError, ValidationFailed
from cryptoorchestrator.strategies import base, registry
from cryptoorchestrator.strategies.loader import guard, load_file, load_strategies

GOOD = textwrap.dedent(
    '''
    from __future__ import annotations

    from typing import ClassVar

    import numpy as np
    import pandas as pd
    from pydantic import Field

    from cryptoorchestrator.strategies import base


    class UpDaysParams(base.StrategyParams):
        days: int = Field(default=3, ge=1, le=50)


    class UpDays(base.Strategy[UpDaysParams]):
        """Buys after N rising closes in a row."""

        name: ClassVar[str] = "up_days"
        description: ClassVar[str] = "Buy after N rising closes"
        params_model = UpDaysParams

        def signals(self, candles: pd.DataFrame, params: UpDaysParams) -> base.Signals:
            rising = candles["close"].diff().gt(0).astype(int)
            streak = rising.rolling(params.days).sum().eq(params.days).to_numpy()
            return base.Signals.long_only(streak, ~streak)
    '''
)


def write(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.write_text(source)
    return path


def test_loader_registers_good_files_and_reports_broken_ones(tmp_path: Path, candles: pd.DataFrame) -> None:
    write(tmp_path, "good.py", GOOD)
    broken = write(tmp_path, "broken.py", "def nope(:\n")
    write(tmp_path, "raises.py", "raise RuntimeError('boom at import')\n")
    write(tmp_path, "exits.py", "import sys\nsys.exit(3)\n")
    write(tmp_path, "empty.py", "X = 1\n")
    write(tmp_path, "_helper.py", "raise RuntimeError('never imported')\n")
    write(tmp_path, "notes.txt", "not python")
    target = registry.builtin_registry()

    result = load_strategies(tmp_path, target)

    assert result.loaded == ("up_days",) and not result.ok
    strategy = target.get("up_days")()
    signals = strategy.signals(candles, strategy.validate_params({"days": 2}))
    assert signals.problems(len(candles)) == [] and signals.entry_long.any()
    errors = {Path(error.details["file"]).name: error for error in result.errors}
    assert set(errors) == {"broken.py", "raises.py", "exits.py", "empty.py"}
    assert errors["broken.py"].details["file"] == str(broken)
    assert errors["broken.py"].details["exception_type"] == "SyntaxError"
    assert errors["raises.py"].details["exception_message"] == "boom at import"
    assert "RuntimeError: boom at import" in errors["raises.py"].message
    assert "no Strategy subclass" in errors["empty.py"].message
    assert all(error.code == "STRATEGY_ERROR" and error.http_status == 422 for error in result.errors)
    assert all("Traceback" not in error.message for error in result.errors)


def test_name_clash_is_reported_and_nothing_from_the_file_registers(tmp_path: Path) -> None:
    clash = GOOD + textwrap.dedent(
        """

        class Clash(UpDays):
            name: ClassVar[str] = "sma_cross"
        """
    )
    target = registry.builtin_registry()
    with pytest.raises(StrategyError, match="already registered"):
        load_file(write(tmp_path, "clash.py", clash), target)
    assert "up_days" not in target
    assert load_strategies(tmp_path / "missing", target).loaded == ()


class Exploding(base.Strategy[base.StrategyParams]):
    name: ClassVar[str] = "exploding"
    description: ClassVar[str] = "raises everywhere"

    def signals(self, candles: pd.DataFrame, params: base.StrategyParams) -> base.Signals:
        return {"entry": candles["no_such_column"]}  # type: ignore[return-value]

    def on_fill(self, fill: base.FillEvent, params: base.StrategyParams) -> None:
        raise ZeroDivisionError("division by zero")

    def custom_stop(self, position: base.PositionView, params: base.StrategyParams) -> float | None:
        return float("nan")


class WrongShape(base.Strategy[base.StrategyParams]):
    name: ClassVar[str] = "wrong_shape"
    description: ClassVar[str] = "returns bad arrays"

    def signals(self, candles: pd.DataFrame, params: base.StrategyParams) -> base.Signals:
        length = len(candles)
        return base.Signals(
            np.zeros(length - 1, dtype=bool),
            np.zeros(length, dtype=np.int64),
            np.zeros(length, dtype=bool),
            [False] * length,  # type: ignore[arg-type]
            take_profit=np.zeros(length, dtype=bool),  # type: ignore[arg-type]
        )


class BadInit(base.Strategy[base.StrategyParams]):
    name: ClassVar[str] = "bad_init"
    description: ClassVar[str] = "constructor raises"

    def __init__(self) -> None:
        raise OSError("no config")

    def signals(self, candles: pd.DataFrame, params: base.StrategyParams) -> base.Signals:
        return base.Signals.none(len(candles))


FILL = base.FillEvent(bar_index=3, timestamp=0, side="buy", price=1.0, quantity=1.0)
POSITION = base.PositionView(
    bar_index=3, timestamp=0, side="long", entry_price=1.0, current_price=1.1, quantity=1.0
)


def test_guard_turns_exceptions_into_strategy_errors(candles: pd.DataFrame) -> None:
    guarded = guard(Exploding)
    with pytest.raises(StrategyError) as caught:
        guarded.signals(candles)
    error = caught.value
    assert error.code == "STRATEGY_ERROR" and error.http_status == 422
    assert error.details == {
        "strategy": "exploding",
        "hook": "signals",
        "exception_type": "KeyError",
        "exception_message": "'no_such_column'",
    }
    assert error.message.startswith("Strategy 'exploding' raised KeyError in signals")
    assert "Traceback" not in error.message and error.__cause__ is None

    with pytest.raises(StrategyError, match="ZeroDivisionError in on_fill") as fill_error:
        guarded.on_fill(FILL, base.StrategyParams())
    assert fill_error.value.details["hook"] == "on_fill"
    with pytest.raises(StrategyError, match="positive finite price"):
        guarded.custom_stop(POSITION, base.StrategyParams())


def test_guard_checks_shape_and_dtype(candles: pd.DataFrame) -> None:
    with pytest.raises(StrategyError) as caught:
        guard(WrongShape()).signals(candles)
    problems: list[Any] = caught.value.details["problems"]
    assert any("entry_long has shape" in p for p in problems)
    assert any("exit_long has dtype int64" in p for p in problems)
    assert any("exit_short must be a numpy array" in p for p in problems)
    assert any("take_profit has dtype bool" in p for p in problems)


def test_guard_passes_good_results_and_parameter_errors(candles: pd.DataFrame) -> None:
    guarded = guard(registry.get("sma_cross"))
    assert guarded.name == "sma_cross"
    signals = guarded.signals(candles, {"fast": 5, "slow": 20})
    assert signals.problems(len(candles)) == []
    assert guarded.on_fill(FILL, guarded.validate_params(None)) is None
    assert guarded.custom_stop(POSITION, guarded.validate_params(None)) is None
    with pytest.raises(ValidationFailed):  # the caller's input, not the strategy's fault
        guarded.signals(candles, {"fast": 50, "slow": 20})


def test_guard_reports_a_failing_constructor() -> None:
    with pytest.raises(StrategyError, match="OSError in __init__") as caught:
        guard(BadInit)
    assert caught.value.details["strategy"] == "bad_init"
