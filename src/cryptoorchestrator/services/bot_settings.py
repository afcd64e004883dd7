"""What a bot is asked to be, and the checks of it: :class:`BotSpec` (a new bot),
:class:`BotChanges` (an edit), the risk settings, the timeframe, the name and the mode (used
by ``services/bots.py``). Errors name the request field: 422 with ``details.errors``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from cryptoorchestrator.core.errors import InvalidTimeframe, UserError, ValidationFailed
from cryptoorchestrator.domain.accounts import TradingAccount
from cryptoorchestrator.domain.bots import BotMode, BotRisk
from cryptoorchestrator.marketdata.timeframes import SUPPORTED_TIMEFRAMES

DEFAULT_TIMEFRAME = "1h"
MAX_NAME = 100
_RISK_FIELDS = frozenset(f.name for f in dataclasses.fields(BotRisk))
_NULLABLE_RISK = frozenset({"stop_loss", "take_profit", "trailing_stop"})


@dataclass(frozen=True, slots=True)
class BotSpec:
    """What a new bot is asked to be (the API's ``POST /bots`` body, validated by the service).

    The strategy is a saved one (``strategy_id``; ``params`` then override its parameters) or
    inline (``strategy_type`` and ``params``). ``account_id`` None or ``"paper"`` is the paper
    account. ``risk`` holds the risk settings that differ from :class:`BotRisk`'s defaults."""

    name: str
    symbols: tuple[str, ...]
    strategy_id: str | None = None
    strategy_type: str | None = None
    params: Mapping[str, Any] | None = None
    account_id: str | None = None
    mode: str | None = None
    exchange: str | None = None
    timeframe: str = DEFAULT_TIMEFRAME
    risk: Mapping[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """A hash of the request: the same Idempotency-Key with another request is a conflict."""
        payload = json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class BotChanges:
    """A partial update (``PATCH /bots/{id}``): None leaves a setting as it is. ``params`` are
    merged into the stored ones (replaced when ``strategy_type`` changes); ``risk`` holds the
    settings to change (``None`` removes a stop loss, take profit or trailing stop)."""

    name: str | None = None
    strategy_type: str | None = None
    params: Mapping[str, Any] | None = None
    symbols: tuple[str, ...] | None = None
    timeframe: str | None = None
    risk: Mapping[str, Any] | None = None
    is_default: bool | None = None


def invalid(loc: Sequence[str], message: str) -> ValidationFailed:
    """A 422 in the API's validation shape, ``loc`` relative to the request body."""
    where = ".".join(loc)
    return ValidationFailed(
        f"{where}: {message}",
        details={"errors": [{"loc": ["body", *loc], "msg": message, "type": "value_error"}]},
    )


def clean_name(name: str) -> str:
    text = name.strip()
    if not 1 <= len(text) <= MAX_NAME:
        raise invalid(("name",), f"must be 1 to {MAX_NAME} characters")
    return text


def checked_timeframe(timeframe: str) -> str:
    if timeframe not in SUPPORTED_TIMEFRAMES:
        message = f"'{timeframe}' is not supported; use one of {', '.join(SUPPORTED_TIMEFRAMES)}"
        raise InvalidTimeframe(
            f"timeframe: {message}",
            details={
                "timeframe": timeframe,
                "supported": list(SUPPORTED_TIMEFRAMES),
                "errors": [{"loc": ["body", "timeframe"], "msg": message, "type": "value_error"}],
            },
        )
    return timeframe


def _risk_value(name: str, value: Any) -> Any:
    if value is None:
        if name not in _NULLABLE_RISK:
            raise invalid(("risk", name), "cannot be null")
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise invalid(("risk", name), "must be a number") from None
    if name == "max_open_positions":
        if number != number.to_integral_value():
            raise invalid(("risk", name), "must be a whole number")
        return int(number)
    return number


def build_risk(base: BotRisk, changes: Mapping[str, Any]) -> BotRisk:
    """``base`` with ``changes`` applied, checked (422 naming every setting out of bounds)."""
    unknown = sorted(set(changes) - _RISK_FIELDS)
    if unknown:
        raise invalid(
            ("risk", unknown[0]), f"is not a risk setting (known: {', '.join(sorted(_RISK_FIELDS))})"
        )
    risk = dataclasses.replace(base, **{name: _risk_value(name, value) for name, value in changes.items()})
    problems = risk.problems()
    if problems:
        errors = [
            {"loc": ["body", "risk", name], "msg": msg, "type": "value_error"} for name, msg in problems
        ]
        raise ValidationFailed(f"risk.{problems[0][0]}: {problems[0][1]}", details={"errors": errors})
    return risk


def mode_mismatch(asked: str, account: TradingAccount) -> UserError:
    if asked == BotMode.LIVE:
        message = (
            "mode 'live' needs an exchange account: the paper account only trades on paper. "
            "Give the account_id of one of your exchange accounts, or use mode 'paper'."
        )
    else:
        message = (
            f"mode 'paper' trades on the paper account, and account '{account.name}' is a live "
            "exchange account. Leave account_id out (or give 'paper') for a paper bot."
        )
    return UserError(message, details={"mode": asked, "account_id": account.id})
