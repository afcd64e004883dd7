"""Bots as plain records (stdlib only): a strategy running unattended on one trading account.

The records of ``docs/design/bots.md``. Two parts write them: the bots service (what the user
asks: the *desired* state, the configuration) and the bot runtime (what the bot does: ``status``,
``error``, ``started_at``, ``stopped_at``, ``last_candle_at``, ``state`` and its events).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class BotStatus(StrEnum):
    """What the bot is doing now (the contract's statuses)."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    ERROR = "error"


class BotMode(StrEnum):
    PAPER = "paper"
    LIVE = "live"


#: What the user asked for: ``Bot.desired``.
DESIRED_RUNNING = "running"
DESIRED_PAUSED = "paused"
DESIRED_STOPPED = "stopped"
DESIRED_STATES = frozenset({DESIRED_RUNNING, DESIRED_PAUSED, DESIRED_STOPPED})
#: Desired states that need a runner holding the bot.
ACTIVE_DESIRED = frozenset({DESIRED_RUNNING, DESIRED_PAUSED})

#: Bounds of the risk settings (checked by :meth:`BotRisk.problems`).
MAX_LEVERAGE = Decimal(125)
MAX_OPEN_POSITIONS = 100

_ONE = Decimal(1)
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class BotRisk:
    """How a bot sizes and protects its positions. Fractions are decimals: ``0.02`` is 2 %."""

    risk_per_trade: Decimal = Decimal("0.01")
    """Fraction of equity risked per trade (with a stop loss; without one: the fraction of
    equity put in the position)."""
    stop_loss: Decimal | None = None
    """Fraction of the entry price."""
    take_profit: Decimal | None = None
    """Fraction of the entry price."""
    trailing_stop: Decimal | None = None
    """Fraction below the best price since entry."""
    leverage: Decimal = Decimal(1)
    max_open_positions: int = 1
    max_position_fraction: Decimal = Decimal(1)
    """Cap of one position's value over equity (at most ``leverage``)."""

    def problems(self) -> list[tuple[str, str]]:
        """``(field, message)`` for every setting out of bounds (empty when valid): fractions
        in (0, 1), leverage 1..125, max_open_positions 1..100, max_position_fraction in
        (0, leverage]."""
        found: list[tuple[str, str]] = []
        fractions = {
            "risk_per_trade": self.risk_per_trade,
            "stop_loss": self.stop_loss,
            "take_profit": self.take_profit,
            "trailing_stop": self.trailing_stop,
        }
        for name, value in fractions.items():
            if value is not None and not _ZERO < value < _ONE:
                found.append((name, "must be a fraction between 0 and 1 (0.02 means 2 %)"))
        if not _ONE <= self.leverage <= MAX_LEVERAGE:
            found.append(("leverage", f"must be between 1 and {MAX_LEVERAGE}"))
        if not 1 <= self.max_open_positions <= MAX_OPEN_POSITIONS:
            found.append(("max_open_positions", f"must be between 1 and {MAX_OPEN_POSITIONS}"))
        if not _ZERO < self.max_position_fraction <= max(self.leverage, _ONE):
            found.append(("max_position_fraction", "must be above 0 and at most the leverage"))
        return found

    def to_json(self) -> dict[str, Any]:
        """JSON-safe (decimals as strings), for storage; :meth:`from_json` reads it back."""
        return {
            "risk_per_trade": str(self.risk_per_trade),
            "stop_loss": _text(self.stop_loss),
            "take_profit": _text(self.take_profit),
            "trailing_stop": _text(self.trailing_stop),
            "leverage": str(self.leverage),
            "max_open_positions": self.max_open_positions,
            "max_position_fraction": str(self.max_position_fraction),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BotRisk:
        default = cls()
        return cls(
            risk_per_trade=Decimal(str(data.get("risk_per_trade", default.risk_per_trade))),
            stop_loss=_decimal(data.get("stop_loss")),
            take_profit=_decimal(data.get("take_profit")),
            trailing_stop=_decimal(data.get("trailing_stop")),
            leverage=Decimal(str(data.get("leverage", default.leverage))),
            max_open_positions=int(data.get("max_open_positions", default.max_open_positions)),
            max_position_fraction=Decimal(
                str(data.get("max_position_fraction", default.max_position_fraction))
            ),
        )


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@dataclass(frozen=True, slots=True)
class Bot:
    id: str
    """A uuid."""
    user_id: int
    name: str
    strategy_type: str
    """A registry name (``sma_cross``, ``rules``...)."""
    params: dict[str, Any]
    """Validated strategy parameters (defaults filled in)."""
    strategy_id: str | None
    """The saved strategy it came from, if any."""
    account_id: str
    """``trading_accounts.id`` (paper or exchange)."""
    exchange: str
    """The account's exchange (whose prices and candles it uses)."""
    mode: BotMode
    """Paper when the account is the paper account, else live."""
    symbols: tuple[str, ...]
    """Unified symbols, at least one."""
    timeframe: str
    risk: BotRisk
    status: BotStatus
    """What it does now (written by the runtime, except starting/stopping by the service)."""
    desired: str
    """What the user asked: ``running``, ``paused`` or ``stopped``."""
    error: str | None
    """Why ``status`` is ``error``."""
    is_default: bool
    """The seed-004 ``/bot/*`` routes act on the user's default bot."""
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None
    last_candle_at: datetime | None
    """Open time of the last candle it processed (the resume point)."""
    state: dict[str, Any]
    """Runtime state that must survive a restart (per symbol: best price for the trailing
    stop, pending intents...); JSON-safe."""

    @property
    def is_active(self) -> bool:
        """The user wants it running or paused."""
        return self.desired in ACTIVE_DESIRED


@dataclass(frozen=True, slots=True)
class BotEvent:
    id: int | None
    """Assigned by the database."""
    bot_id: str
    user_id: int
    kind: str
    """One of :data:`BOT_EVENT_KINDS`."""
    message: str
    data: dict[str, Any]
    """JSON-safe (decimals as strings)."""
    timestamp: datetime


BOT_EVENT_KINDS = frozenset(
    {"state", "signal", "order", "fill", "protection", "reconcile", "error", "warning"}
)


@dataclass(frozen=True, slots=True)
class BotLease:
    """Which runner holds a bot: exactly one at a time, until ``expires_at`` unless renewed."""

    bot_id: str
    runner_id: str
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
