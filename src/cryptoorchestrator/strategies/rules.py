"""A declarative strategy built from JSON rules.

Example::

    {"entry": {"all": [{"indicator": "rsi", "period": 14, "op": "<", "value": 30}]},
     "exit": {"any": [{"indicator": "sma", "period": 10, "op": "crosses_below",
                       "other": {"indicator": "sma", "period": 30}}]}}

A *node* is a group ``{"all": [node, ...]}`` / ``{"any": [node, ...]}`` (nested freely) or a
*condition* ``{"indicator": NAME, <options>, "op": OP, "value": NUMBER}`` where ``"other":
{"indicator": NAME, <options>}`` may replace ``"value"``. Ops: ``< <= > >= ==`` (bar by bar;
``==`` is exact float equality) and ``crosses_above``/``crosses_below`` (the crossing rule of
:mod:`cryptoorchestrator.strategies.base`). Comparisons with NaN (warm-up) are false.

The strategy's parameters are ``entry`` (required), ``exit``, ``entry_short`` and ``exit_short``
(optional nodes). Every problem in the rules is reported at once as a :class:`ValidationFailed`
(422) whose ``details["errors"]`` holds ``{"loc", "msg", "type"}`` items, ``loc`` being the path
into the JSON (e.g. ``["entry", "all", 0, "period"]``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from cryptoorchestrator import indicators
from cryptoorchestrator.core.errors import ValidationFailed
from cryptoorchestrator.strategies import base

OPS: Final[tuple[str, ...]] = ("<", "<=", ">", ">=", "==", "crosses_above", "crosses_below")
MAX_DEPTH: Final = 16
_REQUIRED: Final = object()
Arrays = Mapping[str, base.FloatArray]
Loc = list[str | int]


@dataclass(frozen=True, slots=True)
class _Option:
    kind: Literal["int", "float"]
    minimum: float
    default: Any = _REQUIRED  # None: optional without default (e.g. a cumulative VWAP)
    strict_minimum: bool = False


@dataclass(frozen=True, slots=True)
class _Indicator:
    options: Mapping[str, _Option]
    compute: Callable[[Arrays, Mapping[str, Any]], base.FloatArray]


def _period(minimum: int = 1) -> _Option:
    return _Option("int", minimum)


_MACD = {"fast": _Option("int", 2, 12), "slow": _Option("int", 3, 26), "signal": _Option("int", 1, 9)}
_BANDS = {"period": _period(2), "stddev": _Option("float", 0.0, 2.0, strict_minimum=True)}
_STOCH = {"period": _period(), "smooth_k": _Option("int", 1, 3), "smooth_d": _Option("int", 1, 3)}


def _column_reader(name: str) -> Callable[[Arrays, Mapping[str, Any]], base.FloatArray]:
    return lambda arrays, _options: arrays[name]


def _hlc(a: Arrays) -> tuple[base.FloatArray, base.FloatArray, base.FloatArray]:
    return a["high"], a["low"], a["close"]


INDICATORS: Final[Mapping[str, _Indicator]] = {
    **{name: _Indicator({}, _column_reader(name)) for name in base.CANDLE_COLUMNS[1:]},
    "sma": _Indicator({"period": _period()}, lambda a, o: indicators.sma(a["close"], o["period"])),
    "ema": _Indicator({"period": _period()}, lambda a, o: indicators.ema(a["close"], o["period"])),
    "rsi": _Indicator({"period": _period(2)}, lambda a, o: indicators.rsi(a["close"], o["period"])),
    "macd": _Indicator(_MACD, lambda a, o: indicators.macd(a["close"], **o).line),
    "macd_signal": _Indicator(_MACD, lambda a, o: indicators.macd(a["close"], **o).signal),
    "macd_hist": _Indicator(_MACD, lambda a, o: indicators.macd(a["close"], **o).hist),
    "bb_upper": _Indicator(_BANDS, lambda a, o: indicators.bollinger(a["close"], **o).upper),
    "bb_middle": _Indicator(_BANDS, lambda a, o: indicators.bollinger(a["close"], **o).middle),
    "bb_lower": _Indicator(_BANDS, lambda a, o: indicators.bollinger(a["close"], **o).lower),
    "atr": _Indicator({"period": _period()}, lambda a, o: indicators.atr(*_hlc(a), o["period"])),
    "adx": _Indicator({"period": _period(2)}, lambda a, o: indicators.adx(*_hlc(a), o["period"])),
    "stoch_k": _Indicator(
        _STOCH, lambda a, o: indicators.stochastic(*_hlc(a), o["period"], o["smooth_k"], o["smooth_d"]).k
    ),
    "stoch_d": _Indicator(
        _STOCH, lambda a, o: indicators.stochastic(*_hlc(a), o["period"], o["smooth_k"], o["smooth_d"]).d
    ),
    "obv": _Indicator({}, lambda a, o: indicators.obv(a["close"], a["volume"])),
    "vwap": _Indicator(
        {"period": _Option("int", 1, None)},
        lambda a, o: indicators.vwap(*_hlc(a), a["volume"], period=o["period"]),
    ),
    "donchian_upper": _Indicator(
        {"period": _period()}, lambda a, o: indicators.donchian(a["high"], a["low"], o["period"]).upper
    ),
    "donchian_middle": _Indicator(
        {"period": _period()}, lambda a, o: indicators.donchian(a["high"], a["low"], o["period"]).middle
    ),
    "donchian_lower": _Indicator(
        {"period": _period()}, lambda a, o: indicators.donchian(a["high"], a["low"], o["period"]).lower
    ),
}


@dataclass(frozen=True, slots=True)
class Operand:
    """An indicator (or candle column) with its options, e.g. ``sma`` with ``period=10``."""

    indicator: str
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Condition:
    """``left OP right`` where right is a number or another operand."""

    left: Operand
    op: str
    right: Operand | float


@dataclass(frozen=True, slots=True)
class Group:
    """``all`` (and) or ``any`` (or) of child nodes."""

    mode: Literal["all", "any"]
    items: tuple[Group | Condition, ...]


Node = Group | Condition


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Parsed rules: one node per signal (None: never)."""

    entry_long: Node
    exit_long: Node | None = None
    entry_short: Node | None = None
    exit_short: Node | None = None


# --- parsing ------------------------------------------------------------------------------


class _Parser:
    """Collects every error instead of stopping at the first one."""

    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def error(self, loc: Loc, msg: str, type_: str) -> None:
        self.errors.append({"loc": list(loc), "msg": msg, "type": type_})

    def node(self, raw: object, loc: Loc, depth: int = 0) -> Node | None:
        if depth > MAX_DEPTH:
            self.error(loc, f"rules are nested deeper than {MAX_DEPTH} levels", "too_deep")
            return None
        if not isinstance(raw, Mapping):
            self.error(loc, "expected an object: a group ('all'/'any') or a condition", "type_error")
            return None
        groups = [key for key in ("all", "any") if key in raw]
        if groups:
            return self.group(raw, groups, loc, depth)
        if "indicator" in raw:
            return self.condition(raw, loc)
        self.error(loc, "expected 'all', 'any' or a condition with 'indicator'", "missing")
        return None

    def group(self, raw: Mapping[str, Any], keys: list[str], loc: Loc, depth: int) -> Group | None:
        if len(raw) != 1:
            self.error(loc, "a group has exactly one key, 'all' or 'any'", "value_error")
            return None
        mode = keys[0]
        children = raw[mode]
        if isinstance(children, str | bytes) or not isinstance(children, Sequence) or not children:
            self.error([*loc, mode], f"'{mode}' must be a non-empty list", "type_error")
            return None
        items = [self.node(child, [*loc, mode, index], depth + 1) for index, child in enumerate(children)]
        if any(item is None for item in items):
            return None
        return Group("all" if mode == "all" else "any", tuple(item for item in items if item is not None))

    def condition(self, raw: Mapping[str, Any], loc: Loc) -> Condition | None:
        left = self.operand({k: v for k, v in raw.items() if k not in ("op", "value", "other")}, loc)
        op = raw.get("op")
        if "op" not in raw:
            self.error([*loc, "op"], "Field required", "missing")
        elif op not in OPS:
            self.error([*loc, "op"], f"unknown op {op!r}; expected one of {', '.join(OPS)}", "invalid_op")
        right = self.right_side(raw, loc)
        if left is None or right is None or op not in OPS:
            return None
        return Condition(left, str(op), right)

    def right_side(self, raw: Mapping[str, Any], loc: Loc) -> Operand | float | None:
        if "value" in raw and "other" in raw:
            self.error(loc, "give either 'value' or 'other', not both", "value_error")
            return None
        if "other" in raw:
            other = raw["other"]
            if not isinstance(other, Mapping):
                self.error([*loc, "other"], "'other' must be an object with 'indicator'", "type_error")
                return None
            return self.operand(other, [*loc, "other"])
        if "value" not in raw:
            self.error([*loc, "value"], "either 'value' or 'other' is required", "missing")
            return None
        value = raw["value"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.error([*loc, "value"], "'value' must be a finite number", "float_type")
            return None
        return float(value)

    def operand(self, raw: Mapping[str, Any], loc: Loc) -> Operand | None:
        if "indicator" not in raw:
            self.error([*loc, "indicator"], "Field required", "missing")
            return None
        name = raw["indicator"]
        spec = INDICATORS.get(name) if isinstance(name, str) else None
        if spec is None or not isinstance(name, str):
            known = ", ".join(sorted(INDICATORS))
            self.error(
                [*loc, "indicator"], f"unknown indicator {name!r}; known: {known}", "unknown_indicator"
            )
            return None
        ok = True
        for key in raw:
            if key != "indicator" and key not in spec.options:
                self.error([*loc, key], f"unknown option {key!r} for indicator '{name}'", "extra_forbidden")
                ok = False
        options: dict[str, Any] = {}
        for key, option in spec.options.items():
            value = self.option(raw, key, option, name, loc)
            ok = ok and value is not _REQUIRED
            options[key] = value
        if ok and name.startswith("macd") and options["fast"] >= options["slow"]:
            self.error([*loc, "slow"], "slow must be greater than fast", "value_error")
            ok = False
        return Operand(name, tuple(sorted(options.items()))) if ok else None

    def option(self, raw: Mapping[str, Any], key: str, option: _Option, name: str, loc: Loc) -> Any:
        if key not in raw or raw[key] is None:
            if option.default is _REQUIRED:
                self.error([*loc, key], f"'{key}' is required for indicator '{name}'", "missing")
            return option.default
        value = raw[key]
        number_types = int if option.kind == "int" else int | float
        if isinstance(value, bool) or not isinstance(value, number_types) or not math.isfinite(value):
            kind = "an integer" if option.kind == "int" else "a number"
            self.error([*loc, key], f"'{key}' must be {kind}", f"{option.kind}_type")
            return _REQUIRED
        too_small = value <= option.minimum if option.strict_minimum else value < option.minimum
        if too_small or value > 100_000:
            relation = ">" if option.strict_minimum else ">="
            self.error(
                [*loc, key], f"'{key}' must be {relation} {option.minimum:g} and <= 100000", "out_of_range"
            )
            return _REQUIRED
        return value


def parse_ruleset(spec: Mapping[str, Any]) -> RuleSet:
    """Parse rules JSON (a mapping with ``entry`` and optional ``exit``, ``entry_short``,
    ``exit_short``); raises :class:`ValidationFailed` listing every problem."""
    parser = _Parser()
    known = ("entry", "exit", "entry_short", "exit_short")
    for key in spec:
        if key not in known:
            parser.error([key], f"unknown key {key!r}; expected {', '.join(known)}", "extra_forbidden")
    if spec.get("entry") is None:
        parser.error(["entry"], "Field required", "missing")
    nodes = {key: parser.node(spec[key], [key]) for key in known if spec.get(key) is not None}
    if parser.errors:
        raise ValidationFailed(
            "Invalid rules", details={"strategy": RulesStrategy.name, "errors": parser.errors}
        )
    # No errors: every present key parsed to a node, and "entry" is present.
    entry = nodes["entry"]
    if entry is None:  # pragma: no cover - unreachable, keeps the type checker honest
        raise ValidationFailed("Invalid rules")
    return RuleSet(entry, nodes.get("exit"), nodes.get("entry_short"), nodes.get("exit_short"))


# --- evaluation ---------------------------------------------------------------------------


class _Evaluator:
    """Evaluates nodes on one candle frame, computing each distinct operand once."""

    def __init__(self, candles: pd.DataFrame) -> None:
        self._arrays = {name: base.column(candles, name) for name in base.CANDLE_COLUMNS[1:]}
        self._length = len(candles)
        self._cache: dict[Operand, base.FloatArray] = {}

    def operand(self, operand: Operand) -> base.FloatArray:
        if operand not in self._cache:
            spec = INDICATORS[operand.indicator]
            self._cache[operand] = spec.compute(self._arrays, dict(operand.options))
        return self._cache[operand]

    def node(self, node: Node | None) -> base.BoolArray:
        if node is None:
            return np.zeros(self._length, dtype=np.bool_)
        if isinstance(node, Group):
            results = [self.node(item) for item in node.items]
            combine = np.logical_and if node.mode == "all" else np.logical_or
            return np.asarray(combine.reduce(results), dtype=np.bool_)
        return self.condition(node)

    def condition(self, condition: Condition) -> base.BoolArray:
        left = self.operand(condition.left)
        right: base.FloatArray | float = (
            condition.right if isinstance(condition.right, float) else self.operand(condition.right)
        )
        op = condition.op
        if op == "crosses_above":
            return base.crosses_above(left, right)
        if op == "crosses_below":
            return base.crosses_below(left, right)
        compare = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal, "==": np.equal}
        return np.asarray(compare[op](left, right), dtype=np.bool_)


def evaluate(ruleset: RuleSet, candles: pd.DataFrame) -> base.Signals:
    """The signals of parsed rules on ``candles``."""
    evaluator = _Evaluator(candles)
    return base.Signals(
        evaluator.node(ruleset.entry_long),
        evaluator.node(ruleset.exit_long),
        evaluator.node(ruleset.entry_short),
        evaluator.node(ruleset.exit_short),
    )


# --- the strategy -------------------------------------------------------------------------

_DEFAULT_ENTRY: Final = {"all": [{"indicator": "rsi", "period": 14, "op": "<", "value": 30}]}
_DEFAULT_EXIT: Final = {"any": [{"indicator": "rsi", "period": 14, "op": ">", "value": 70}]}


class RulesParams(base.StrategyParams):
    """Rule trees per signal (see the module docstring for the grammar)."""

    entry: dict[str, Any] = Field(default_factory=lambda: dict(_DEFAULT_ENTRY), description="Long entry")
    exit: dict[str, Any] | None = Field(default_factory=lambda: dict(_DEFAULT_EXIT), description="Long exit")
    entry_short: dict[str, Any] | None = Field(default=None, description="Short entry")
    exit_short: dict[str, Any] | None = Field(default=None, description="Short exit")


class RulesStrategy(base.Strategy[RulesParams]):
    """Signals from declarative JSON rules over indicators and candle columns."""

    name: ClassVar[str] = "rules"
    description: ClassVar[str] = (
        "Declarative strategy: entry/exit conditions on indicators combined with all/any."
    )
    params_model = RulesParams

    @classmethod
    def validate_params(
        cls, raw: Mapping[str, Any] | base.StrategyParams | str | bytes | None = None
    ) -> RulesParams:
        """Validate the parameter model and the rule trees (a JSON string is accepted too)."""
        if isinstance(raw, str | bytes):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as exc:
                error = {"loc": [], "msg": f"invalid JSON: {exc.msg}", "type": "json_invalid"}
                raise ValidationFailed(
                    "Invalid rules", details={"strategy": cls.name, "errors": [error]}
                ) from None
            if not isinstance(raw, Mapping):
                error = {"loc": [], "msg": "rules must be a JSON object", "type": "type_error"}
                raise ValidationFailed("Invalid rules", details={"strategy": cls.name, "errors": [error]})
        params: RulesParams = super().validate_params(raw)
        parse_ruleset(params.model_dump())
        return params

    def signals(self, candles: pd.DataFrame, params: RulesParams) -> base.Signals:
        return evaluate(parse_ruleset(params.model_dump()), candles)
