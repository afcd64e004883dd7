"""User strategies: loading them from a directory, and the guard that runs them.

Loading executes the Python files of an operator-configured directory (the platform trusts that
directory like its own code; it is not a sandbox). Each ``*.py`` file not starting with ``_`` is
imported on its own; every :class:`~cryptoorchestrator.strategies.base.Strategy` subclass it
defines is registered under its ``name``. A file that fails to import, defines no strategy or
clashes with a registered name is reported as a :class:`StrategyError` in the result; the
other files still load.

:func:`guard` wraps a strategy so that any exception from its code becomes a
:class:`StrategyError` (422, ``STRATEGY_ERROR``) naming the strategy, the hook and the original
exception type and message (never the traceback), and so that malformed signals are caught
before they reach an engine (architecture convention 5, after freqtrade's strategy wrapper).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import pandas as pd

from cryptoorchestrator.core.errors import CryptoOrchestratorError, StrategyError
from cryptoorchestrator.strategies import base
from cryptoorchestrator.strategies import registry as registry_module

_MODULE_PREFIX: Final = "cryptoorchestrator_user_strategies"
_MAX_MESSAGE: Final = 500


def _exception_text(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


# --- loading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What :func:`load_strategies` registered and what it could not load."""

    loaded: tuple[str, ...]
    errors: tuple[StrategyError, ...]

    @property
    def ok(self) -> bool:
        """True when every file loaded."""
        return not self.errors


def _file_error(path: Path, message: str, exc: BaseException | None = None) -> StrategyError:
    details: dict[str, Any] = {"file": str(path)}
    if exc is not None:
        details["exception_type"] = type(exc).__name__
        details["exception_message"] = _exception_text(exc)
        message = f"{message}: {type(exc).__name__}: {_exception_text(exc)}"
    return StrategyError(f"Strategy file {path.name}: {message}", details=details)


def _import_file(path: Path) -> ModuleType:
    # A unique, stable module name per file: two files with the same stem in different
    # directories must not replace each other in sys.modules.
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    stem = "".join(char if char.isalnum() else "_" for char in path.stem)
    module_name = f"{_MODULE_PREFIX}_{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path.name}")
    module = importlib.util.module_from_spec(spec)
    # Registered before executing: pydantic and dataclasses resolve annotations through it.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def strategies_in(module: ModuleType) -> list[type[base.Strategy[Any]]]:
    """Concrete Strategy subclasses defined (not merely imported) in ``module``."""
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, base.Strategy)
        and value.__module__ == module.__name__
        and not inspect.isabstract(value)
    ]


def load_file(path: Path, registry: registry_module.StrategyRegistry) -> list[str]:
    """Import one file and register its strategies; raises :class:`StrategyError` on failure.

    Nothing from the file is registered unless all its strategies can be.
    """
    try:
        module = _import_file(path)
    except (Exception, SystemExit) as exc:  # user code: any failure is the file's, reported
        raise _file_error(path, "could not be imported", exc) from None
    found = strategies_in(module)
    if not found:
        raise _file_error(path, "defines no Strategy subclass")
    for strategy in found:
        problems = registry_module.strategy_problems(strategy)
        if problems:
            raise _file_error(path, f"{strategy.__name__} is not a valid strategy: {'; '.join(problems)}")
        if strategy.name in registry:
            raise _file_error(path, f"the name '{strategy.name}' is already registered")
    for strategy in found:
        registry.register(strategy)
    return [strategy.name for strategy in found]


def load_strategies(directory: Path | str, registry: registry_module.StrategyRegistry) -> LoadResult:
    """Load every ``*.py`` file of ``directory`` (sorted, ``_*`` skipped) into ``registry``.

    A missing directory yields an empty result; broken files are listed in ``errors``.
    """
    root = Path(directory)
    if not root.is_dir():
        return LoadResult((), ())
    loaded: list[str] = []
    errors: list[StrategyError] = []
    for path in sorted(root.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            loaded.extend(load_file(path, registry))
        except StrategyError as exc:
            errors.append(exc)
    return LoadResult(tuple(loaded), tuple(errors))


# --- the guard ----------------------------------------------------------------------------


class GuardedStrategy:
    """Runs a strategy's code so that its failures become :class:`StrategyError`."""

    def __init__(self, strategy: base.Strategy[Any]) -> None:
        self.strategy = strategy

    @property
    def name(self) -> str:
        """The wrapped strategy's name."""
        return str(getattr(self.strategy, "name", type(self.strategy).__name__))

    def _error(self, hook: str, exc: BaseException) -> StrategyError:
        return StrategyError(
            f"Strategy '{self.name}' raised {type(exc).__name__} in {hook}: {_exception_text(exc)}",
            details={
                "strategy": self.name,
                "hook": hook,
                "exception_type": type(exc).__name__,
                "exception_message": _exception_text(exc),
            },
        )

    def _invalid(self, hook: str, problems: list[str]) -> StrategyError:
        return StrategyError(
            f"Strategy '{self.name}' returned invalid output from {hook}: {'; '.join(problems)}",
            details={"strategy": self.name, "hook": hook, "problems": problems},
        )

    def validate_params(self, raw: Mapping[str, Any] | base.StrategyParams | None) -> base.StrategyParams:
        """The strategy's parameter validation; a :class:`ValidationFailed` (the caller's input)
        passes through, anything else from user code becomes a :class:`StrategyError`."""
        try:
            params: base.StrategyParams = self.strategy.validate_params(raw)
            return params
        except CryptoOrchestratorError:
            raise
        except Exception as exc:
            raise self._error("validate_params", exc) from None

    def signals(
        self, candles: pd.DataFrame, params: Mapping[str, Any] | base.StrategyParams | None = None
    ) -> base.Signals:
        """Validated parameters, the strategy's signals, and a check of their shape and dtype."""
        validated = self.validate_params(params)
        try:
            result = self.strategy.signals(candles, validated)
        except StrategyError:
            raise
        except Exception as exc:
            raise self._error("signals", exc) from None
        if not isinstance(result, base.Signals):
            raise self._invalid("signals", [f"expected Signals, got {type(result).__name__}"])
        problems = result.problems(len(candles))
        if problems:
            raise self._invalid("signals", problems)
        return result

    def on_fill(self, fill: base.FillEvent, params: base.StrategyParams) -> None:
        """The strategy's fill hook, guarded."""
        try:
            self.strategy.on_fill(fill, params)
        except StrategyError:
            raise
        except Exception as exc:
            raise self._error("on_fill", exc) from None

    def custom_stop(self, position: base.PositionView, params: base.StrategyParams) -> float | None:
        """The strategy's stop hook, guarded; the result must be None or a positive finite price."""
        try:
            stop = self.strategy.custom_stop(position, params)
        except StrategyError:
            raise
        except Exception as exc:
            raise self._error("custom_stop", exc) from None
        if stop is None:
            return None
        if (
            isinstance(stop, bool)
            or not isinstance(stop, int | float)
            or not math.isfinite(stop)
            or stop <= 0
        ):
            raise self._invalid(
                "custom_stop", [f"stop must be None or a positive finite price, got {stop!r}"]
            )
        return float(stop)


def guard(strategy: base.Strategy[Any] | type[base.Strategy[Any]]) -> GuardedStrategy:
    """Wrap a strategy (an instance, or a class to instantiate) in a :class:`GuardedStrategy`.

    Instantiating the class is guarded too: a constructor that raises gives a StrategyError.
    """
    if isinstance(strategy, type):
        try:
            instance = strategy()
        except Exception as exc:
            name = str(getattr(strategy, "name", strategy.__name__))
            raise StrategyError(
                f"Strategy '{name}' raised {type(exc).__name__} in __init__: {_exception_text(exc)}",
                details={
                    "strategy": name,
                    "hook": "__init__",
                    "exception_type": type(exc).__name__,
                    "exception_message": _exception_text(exc),
                },
            ) from None
        return GuardedStrategy(instance)
    return GuardedStrategy(strategy)
