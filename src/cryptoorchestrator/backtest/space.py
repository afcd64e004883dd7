"""The parameter space of an optimisation, checked against a strategy's parameter model.

See :mod:`cryptoorchestrator.backtest.optimize` for the spec format and the validation rules.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np

from cryptoorchestrator.core.errors import ValidationFailed
from cryptoorchestrator.strategies import base, registry

StrategyRef: TypeAlias = str | type[base.Strategy[Any]]


def _invalid(field: str, message: str, **extra: Any) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", details={"field": field, **extra})


def resolve_strategy(strategy: StrategyRef) -> type[base.Strategy[Any]]:
    """A strategy class from a built-in registry name or the class itself."""
    if isinstance(strategy, str):
        return registry.builtin_registry().get(strategy)
    if isinstance(strategy, type) and issubclass(strategy, base.Strategy):
        return strategy
    raise _invalid("strategy", "must be a registered strategy name or a Strategy subclass")


# --- the parameter space ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RangeSpec:
    """``low..high`` inclusive; integers when ``integer``, else floats (``step`` may be None)."""

    name: str
    low: float
    high: float
    step: float | None
    integer: bool

    def grid_values(self) -> list[Any]:
        """Every value of the lattice ``low, low + step, ...`` not above ``high``."""
        if self.step is None:
            raise _invalid(self.name, "a float range needs a 'step' for a grid search")
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        if self.integer:
            return [int(self.low + k * self.step) for k in range(count)]
        return [round(self.low + k * self.step, 12) for k in range(count)]

    def sample(self, rng: np.random.Generator) -> Any:
        """One value drawn uniformly (on the lattice when there is a step)."""
        if self.step is None:
            return float(rng.uniform(self.low, self.high))
        values = self.grid_values()
        return values[int(rng.integers(len(values)))]


@dataclasses.dataclass(frozen=True, slots=True)
class ChoiceSpec:
    """A finite list of values."""

    name: str
    values: tuple[Any, ...]

    def grid_values(self) -> list[Any]:
        """The choices in the given order."""
        return list(self.values)

    def sample(self, rng: np.random.Generator) -> Any:
        """One choice drawn uniformly."""
        return self.values[int(rng.integers(len(self.values)))]


ParameterSpec: TypeAlias = RangeSpec | ChoiceSpec


def _property_schema(prop: Mapping[str, Any]) -> tuple[set[str], dict[str, float]]:
    """The JSON types a property accepts and its numeric bounds (``anyOf`` flattened)."""
    variants = list(prop.get("anyOf", [])) or [prop]
    types: set[str] = set()
    bounds: dict[str, float] = {}
    for variant in variants:
        if "type" in variant:
            types.add(str(variant["type"]))
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if key in variant:
                bounds[key] = float(variant[key])
    return types, bounds


def _check_value(name: str, value: Any, types: set[str], bounds: Mapping[str, float]) -> None:
    """Raise ValidationFailed naming ``name`` when ``value`` has the wrong type or is out of bounds."""
    if value is None:
        if types and "null" not in types:
            raise _invalid(name, "does not accept null")
        return
    if isinstance(value, bool):
        if types and "boolean" not in types:
            raise _invalid(name, f"{value!r} is not a valid value (expected {sorted(types)})")
        return
    if isinstance(value, int | float):
        if types and not types & {"integer", "number"}:
            raise _invalid(name, f"{value!r} is not a valid value (expected {sorted(types)})")
        if "number" not in types and "integer" in types and not float(value).is_integer():
            raise _invalid(name, f"{value!r} is not an integer")
        _check_bounds(name, float(value), bounds)
        return
    if types and not types & {"string", "object", "array"}:
        raise _invalid(name, f"{value!r} is not a valid value (expected {sorted(types)})")


def _check_bounds(name: str, value: float, bounds: Mapping[str, float]) -> None:
    checks: tuple[tuple[str, Callable[[float], bool], str], ...] = (
        ("minimum", lambda b: value >= b, ">="),
        ("maximum", lambda b: value <= b, "<="),
        ("exclusiveMinimum", lambda b: value > b, ">"),
        ("exclusiveMaximum", lambda b: value < b, "<"),
    )
    for key, ok, symbol in checks:
        if key in bounds and not ok(bounds[key]):
            raise _invalid(name, f"{value:g} is out of bounds: must be {symbol} {bounds[key]:g}", bound=key)


def _range_spec(name: str, raw: Mapping[str, Any], types: set[str], bounds: Mapping[str, float]) -> RangeSpec:
    unknown = set(raw) - {"low", "high", "step"}
    if unknown or "low" not in raw or "high" not in raw:
        raise _invalid(name, "a range needs 'low' and 'high' (and optionally 'step')")
    low, high, step = raw["low"], raw["high"], raw.get("step")
    for value in (low, high, step):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _invalid(name, "range bounds and step must be numbers")
    integer = "integer" in types and "number" not in types
    if not types & {"integer", "number"}:
        raise _invalid(name, f"is not numeric (expected {sorted(types)}); use 'values'")
    if integer and step is None:
        step = 1
    if step is not None and not (math.isfinite(step) and step > 0):
        raise _invalid(name, "step must be > 0")
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise _invalid(name, "needs finite low <= high")
    if integer and not all(float(v).is_integer() for v in (low, high, step) if v is not None):
        raise _invalid(name, "is an integer parameter: low, high and step must be integers")
    for value in (low, high):
        _check_value(name, value, types, bounds)
    return RangeSpec(name, float(low), float(high), None if step is None else float(step), integer)


class ParameterSpace:
    """The searchable values of some of a strategy's parameters, checked against its model.

    Build it with :meth:`from_specs`. ``fixed`` parameters are added to every combination.
    """

    def __init__(
        self,
        strategy: type[base.Strategy[Any]],
        specs: Sequence[ParameterSpec],
        fixed: Mapping[str, Any] | None = None,
    ) -> None:
        self.strategy = strategy
        self.specs = tuple(specs)
        self.fixed = dict(fixed or {})

    @classmethod
    def from_specs(
        cls,
        strategy: StrategyRef,
        specs: Mapping[str, Any],
        *,
        fixed: Mapping[str, Any] | None = None,
    ) -> ParameterSpace:
        """Parse and validate ``specs`` (see the module docstring) for ``strategy``.

        Raises ValidationFailed (422) with ``details["field"]`` naming the parameter that is
        unknown, of the wrong kind or out of the model's bounds.
        """
        strategy_class = resolve_strategy(strategy)
        properties: dict[str, Any] = strategy_class.parameters_schema().get("properties", {})
        if not specs:
            raise _invalid("space", "needs at least one parameter")
        parsed: list[ParameterSpec] = []
        for name, raw in {**specs, **dict(fixed or {})}.items():
            if name not in properties:
                raise _invalid(name, "is not a parameter of this strategy", allowed=sorted(properties))
            types, bounds = _property_schema(properties[name])
            if name in (fixed or {}):
                _check_value(name, raw, types, bounds)
                continue
            if not isinstance(raw, Mapping):
                raise _invalid(name, "spec must be {'low','high','step'} or {'values': [...]}")
            if "values" in raw:
                values = raw["values"]
                if set(raw) != {"values"} or not isinstance(values, list | tuple) or not values:
                    raise _invalid(name, "'values' must be a non-empty list and come alone")
                for value in values:
                    _check_value(name, value, types, bounds)
                parsed.append(ChoiceSpec(name, tuple(values)))
            else:
                parsed.append(_range_spec(name, raw, types, bounds))
        return cls(strategy_class, parsed, fixed)

    @property
    def names(self) -> list[str]:
        """The searched parameter names, in spec order."""
        return [spec.name for spec in self.specs]

    def grid(self) -> list[dict[str, Any]]:
        """Every combination (Cartesian product, the last parameter varying fastest)."""
        combos: list[dict[str, Any]] = [{}]
        for spec in self.specs:
            combos = [{**combo, spec.name: value} for combo in combos for value in spec.grid_values()]
        return [{**self.fixed, **combo} for combo in combos]

    def sample(self, count: int, *, seed: int | None) -> list[dict[str, Any]]:
        """``count`` combinations drawn independently (with replacement) from a seeded generator."""
        rng = np.random.default_rng(seed)
        return [{**self.fixed, **{s.name: s.sample(rng) for s in self.specs}} for _ in range(count)]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Values from an Optuna trial (``suggest_int``/``suggest_float``/``suggest_categorical``)."""
        out: dict[str, Any] = dict(self.fixed)
        for spec in self.specs:
            if isinstance(spec, ChoiceSpec):
                out[spec.name] = trial.suggest_categorical(spec.name, list(spec.values))
            elif spec.integer:
                step = int(spec.step or 1)
                high = int(spec.low) + step * int(
                    (spec.high - spec.low) // step
                )  # Optuna wants high on the lattice
                out[spec.name] = trial.suggest_int(spec.name, int(spec.low), high, step=step)
            else:
                top = spec.high if spec.step is None else float(spec.grid_values()[-1])
                out[spec.name] = trial.suggest_float(spec.name, spec.low, top, step=spec.step)
        return out
