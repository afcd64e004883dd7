"""The strategy interface: typed parameters, vectorised signals and event hooks.

A strategy turns candles (a DataFrame with ``timestamp`` (int64 ms), ``open``, ``high``, ``low``,
``close``, ``volume`` (float64), ascending) into four boolean arrays. The one rule every strategy
obeys: *a signal at bar t may use data up to and including bar t only*; the engine acts on it at
the next bar's open by default. :mod:`cryptoorchestrator.strategies.lookahead` checks the rule.

Crossing rule used by every built-in and by the rules strategy: ``a`` crosses above ``b`` at bar
``t`` when ``a[t] > b[t] and a[t-1] <= b[t-1]`` (strictly greater now, less-or-equal before), so
an exact tie is never a cross by itself; a series that rises to a tie and then above crosses on
the bar where it becomes strictly greater. Bars where either side is NaN (indicator warm-up) never
cross. ``crosses_below`` mirrors it: ``a[t] < b[t] and a[t-1] >= b[t-1]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Final, Generic, TypeVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from cryptoorchestrator.core.errors import ValidationFailed

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]

CANDLE_COLUMNS: Final[tuple[str, ...]] = ("timestamp", "open", "high", "low", "close", "volume")
SIGNAL_NAMES: Final[tuple[str, ...]] = ("entry_long", "exit_long", "entry_short", "exit_short")
HINT_NAMES: Final[tuple[str, ...]] = ("stop_loss", "take_profit")


class StrategyParams(BaseModel):
    """Base of every strategy's parameter model: immutable, unknown fields rejected.

    Declare bounds with ``Field(ge=..., le=...)``; every field needs a default so that the
    catalog can show one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


ParamsT = TypeVar("ParamsT", bound=StrategyParams)


@dataclass(frozen=True, slots=True, eq=False)
class Signals:
    """The output of :meth:`Strategy.signals`: one value per candle.

    ``stop_loss``/``take_profit`` are optional price hints per bar (NaN where there is none).
    """

    entry_long: BoolArray
    exit_long: BoolArray
    entry_short: BoolArray
    exit_short: BoolArray
    stop_loss: FloatArray | None = None
    take_profit: FloatArray | None = None

    def __len__(self) -> int:
        return len(self.entry_long)

    @classmethod
    def none(cls, length: int) -> Signals:
        """All-false signals for ``length`` bars."""
        return cls(
            np.zeros(length, dtype=np.bool_),
            np.zeros(length, dtype=np.bool_),
            np.zeros(length, dtype=np.bool_),
            np.zeros(length, dtype=np.bool_),
        )

    @classmethod
    def long_only(cls, entry: BoolArray, exit_: BoolArray, **hints: FloatArray | None) -> Signals:
        """Long entries and exits; the short arrays are all false."""
        length = len(entry)
        return cls(
            np.asarray(entry, dtype=np.bool_),
            np.asarray(exit_, dtype=np.bool_),
            np.zeros(length, dtype=np.bool_),
            np.zeros(length, dtype=np.bool_),
            **hints,
        )

    def as_dict(self) -> dict[str, NDArray[Any] | None]:
        """Name -> array (hints may be None)."""
        return {field.name: getattr(self, field.name) for field in fields(self)}

    def problems(self, length: int) -> list[str]:
        """Why these signals are not valid for ``length`` candles (empty when they are)."""
        found: list[str] = []
        for name in SIGNAL_NAMES:
            found.extend(_array_problems(name, getattr(self, name), length, kind="b"))
        for name in HINT_NAMES:
            value = getattr(self, name)
            if value is not None:
                found.extend(_array_problems(name, value, length, kind="f"))
        return found


def _array_problems(name: str, value: object, length: int, *, kind: str) -> list[str]:
    expected = "bool" if kind == "b" else "float"
    if not isinstance(value, np.ndarray):
        return [f"{name} must be a numpy array of {expected}, got {type(value).__name__}"]
    found = []
    if value.shape != (length,):
        found.append(f"{name} has shape {value.shape}, expected ({length},)")
    if value.dtype.kind != kind:
        found.append(f"{name} has dtype {value.dtype}, expected {expected}")
    return found


@dataclass(frozen=True, slots=True)
class FillEvent:
    """A fill reported to :meth:`Strategy.on_fill` by an event-driven runtime."""

    bar_index: int
    timestamp: int
    side: str  # "buy" or "sell"
    price: float
    quantity: float


@dataclass(frozen=True, slots=True)
class PositionView:
    """What :meth:`Strategy.custom_stop` sees of the open position at a bar."""

    bar_index: int
    timestamp: int
    side: str  # "long" or "short"
    entry_price: float
    current_price: float
    quantity: float


def validation_errors(error: PydanticValidationError) -> list[dict[str, Any]]:
    """pydantic errors as JSON-safe ``{"loc": [...], "msg", "type"}`` dicts."""
    return [
        {
            "loc": [str(part) if not isinstance(part, int) else part for part in item["loc"]],
            "msg": item["msg"],
            "type": item["type"],
        }
        for item in error.errors(include_url=False)
    ]


class Strategy(ABC, Generic[ParamsT]):
    """Base class of every strategy (built-in or user supplied).

    Subclasses set ``name``, ``description`` and ``params_model`` and implement :meth:`signals`.
    Instances may keep state between hook calls of one run; :meth:`signals` must be a pure
    function of ``candles`` and ``params``.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    params_model: ClassVar[type[StrategyParams]] = StrategyParams

    @classmethod
    def parameters_schema(cls) -> dict[str, Any]:
        """The JSON Schema of the parameter model."""
        return cls.params_model.model_json_schema()

    @classmethod
    def default_params(cls) -> ParamsT:
        """The parameters with every field at its default."""
        return cls.validate_params(None)

    @classmethod
    def validate_params(cls, raw: Mapping[str, Any] | StrategyParams | None = None) -> ParamsT:
        """Validate raw parameters (a mapping, a model instance or None for the defaults).

        Raises :class:`ValidationFailed` (422) whose ``details["errors"]`` lists
        ``{"loc": [field, ...], "msg", "type"}`` for each problem.
        """
        if isinstance(raw, cls.params_model):
            return raw  # type: ignore[return-value]
        if isinstance(raw, StrategyParams):
            raw = raw.model_dump()
        try:
            return cls.params_model.model_validate(dict(raw or {}))  # type: ignore[return-value]
        except PydanticValidationError as exc:
            raise ValidationFailed(
                f"Invalid parameters for strategy '{cls.name}'",
                details={"strategy": cls.name, "errors": validation_errors(exc)},
            ) from None

    @abstractmethod
    def signals(self, candles: pd.DataFrame, params: ParamsT) -> Signals:
        """Vectorised signals, one per candle; bar ``t`` may use data up to bar ``t`` only."""

    def on_fill(self, fill: FillEvent, params: ParamsT) -> None:
        """Called by an event-driven runtime after each fill. Default: nothing."""
        return None

    def custom_stop(self, position: PositionView, params: ParamsT) -> float | None:
        """A stop price for the open position at this bar, or None to keep the current one."""
        return None


def require_candles(candles: pd.DataFrame) -> None:
    """Raise :class:`ValidationFailed` when candle columns are missing."""
    missing = [column for column in CANDLE_COLUMNS if column not in candles.columns]
    if missing:
        raise ValidationFailed(
            "candles are missing columns", details={"missing": missing, "required": list(CANDLE_COLUMNS)}
        )


def column(candles: pd.DataFrame, name: str) -> FloatArray:
    """One candle column as a contiguous float64 array."""
    return np.ascontiguousarray(candles[name].to_numpy(dtype=np.float64))


def crosses_above(a: FloatArray, b: FloatArray | float) -> BoolArray:
    """``a[t] > b[t] and a[t-1] <= b[t-1]``; false at bar 0 and wherever a value is NaN."""
    left = np.asarray(a, dtype=np.float64)
    right = np.broadcast_to(np.asarray(b, dtype=np.float64), left.shape)
    out = np.zeros(left.shape, dtype=np.bool_)
    out[1:] = (left[1:] > right[1:]) & (left[:-1] <= right[:-1])
    return out


def crosses_below(a: FloatArray, b: FloatArray | float) -> BoolArray:
    """``a[t] < b[t] and a[t-1] >= b[t-1]``; false at bar 0 and wherever a value is NaN."""
    left = np.asarray(a, dtype=np.float64)
    right = np.broadcast_to(np.asarray(b, dtype=np.float64), left.shape)
    out = np.zeros(left.shape, dtype=np.bool_)
    out[1:] = (left[1:] < right[1:]) & (left[:-1] >= right[:-1])
    return out
