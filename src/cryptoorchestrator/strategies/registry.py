"""The strategy registry: strategies by name, their catalog and parameter validation."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from cryptoorchestrator.core.errors import Conflict, NotFound, ValidationFailed
from cryptoorchestrator.strategies import base
from cryptoorchestrator.strategies import rules as rules_module
from cryptoorchestrator.strategies.library import BUILTIN_STRATEGIES

_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
StrategyClass = type[base.Strategy[Any]]


class StrategyNotFound(NotFound):
    """No strategy is registered under the requested name (404)."""

    code = "STRATEGY_NOT_FOUND"
    default_message = "The strategy was not found."


class StrategyAlreadyRegistered(Conflict):
    """Another strategy already uses the name (409)."""

    code = "STRATEGY_ALREADY_REGISTERED"
    default_message = "A strategy with this name is already registered."


class StrategyRegistry:
    """Strategy classes by name. Build one with :func:`builtin_registry` (or empty) and add
    user strategies with :meth:`register` (the loader does)."""

    def __init__(self, strategies: Iterable[StrategyClass] = ()) -> None:
        self._strategies: dict[str, StrategyClass] = {}
        for strategy in strategies:
            self.register(strategy)

    def register(self, strategy: StrategyClass, *, replace: bool = False) -> StrategyClass:
        """Add ``strategy`` under its ``name``; usable as a class decorator.

        Raises :class:`ValidationFailed` for a class that is not a complete strategy and
        :class:`StrategyAlreadyRegistered` for a taken name unless ``replace``.
        """
        problems = strategy_problems(strategy)
        if problems:
            raise ValidationFailed(
                f"{getattr(strategy, '__name__', strategy)!r} is not a valid strategy",
                details={
                    "errors": [{"loc": [], "msg": problem, "type": "value_error"} for problem in problems]
                },
            )
        if (
            strategy.name in self._strategies
            and not replace
            and self._strategies[strategy.name] is not strategy
        ):
            raise StrategyAlreadyRegistered(
                f"A strategy named '{strategy.name}' is already registered", details={"name": strategy.name}
            )
        self._strategies[strategy.name] = strategy
        return strategy

    def get(self, name: str) -> StrategyClass:
        """The strategy class registered as ``name``; :class:`StrategyNotFound` (404) otherwise."""
        try:
            return self._strategies[name]
        except KeyError:
            raise StrategyNotFound(
                f"No strategy named '{name}'", details={"name": name, "available": self.names()}
            ) from None

    def create(self, name: str) -> base.Strategy[Any]:
        """A new instance of the strategy registered as ``name``."""
        return self.get(name)()

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._strategies)

    def __contains__(self, name: object) -> bool:
        return name in self._strategies

    def __len__(self) -> int:
        return len(self._strategies)

    def validate_params(self, name: str, raw: Mapping[str, Any] | None = None) -> base.StrategyParams:
        """Validated parameters of strategy ``name`` (422 :class:`ValidationFailed` naming fields)."""
        params: base.StrategyParams = self.get(name).validate_params(raw)
        return params

    def catalog(self) -> list[dict[str, Any]]:
        """Name, description, parameter JSON Schema and defaults of every strategy, by name."""
        return [describe(self._strategies[name]) for name in self.names()]


def describe(strategy: StrategyClass) -> dict[str, Any]:
    """The catalog entry of one strategy."""
    return {
        "name": strategy.name,
        "description": strategy.description,
        "parameters_schema": strategy.parameters_schema(),
        "defaults": strategy.default_params().model_dump(mode="json"),
    }


def strategy_problems(strategy: object) -> list[str]:
    """Why ``strategy`` cannot be registered (empty when it can)."""
    if not isinstance(strategy, type) or not issubclass(strategy, base.Strategy):
        return ["not a subclass of Strategy"]
    problems = []
    name = getattr(strategy, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append("name must be lower-case letters, digits and '_' (1-64, starting with a letter)")
    if not isinstance(getattr(strategy, "description", None), str):
        problems.append("description must be a string")
    if getattr(strategy, "__abstractmethods__", None):
        problems.append(f"abstract methods not implemented: {sorted(strategy.__abstractmethods__)}")
    model = getattr(strategy, "params_model", None)
    if not isinstance(model, type) or not issubclass(model, base.StrategyParams):
        problems.append("params_model must be a StrategyParams subclass")
    if not problems:
        try:
            strategy.default_params()
        except ValidationFailed as exc:
            problems.append(f"parameters need valid defaults: {exc.details.get('errors')}")
    return problems


def builtin_registry() -> StrategyRegistry:
    """A new registry holding the built-in strategies and the rules strategy."""
    return StrategyRegistry([*BUILTIN_STRATEGIES, rules_module.RulesStrategy])


@functools.cache
def default_registry() -> StrategyRegistry:
    """The process-wide registry of built-ins, built on first use (not at import)."""
    return builtin_registry()


def get(name: str) -> StrategyClass:
    """The built-in strategy ``name`` from :func:`default_registry`; 404 when unknown."""
    return default_registry().get(name)


def catalog() -> list[dict[str, Any]]:
    """The catalog of :func:`default_registry`."""
    return default_registry().catalog()
