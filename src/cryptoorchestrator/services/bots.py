"""Bots: what a user creates and steers (``docs/design/bots.md``).

:class:`BotService` validates a bot's configuration (strategy, account, symbols, timeframe,
risk), stores it, and for every user action writes only the *desired* state (and an event), then
wakes the :class:`BotSupervisor`: the bot runtime (``services/bot_runner.py``) does the trading
and owns ``status`` from there on. Rules it implements:

* **mode** comes from the account: the paper account makes a paper bot, an exchange account a
  live one; asking for the other mode is a 400 that says which account to give.
* **editing**: the name, the risk settings and the default flag can change at any time (a risk
  change wakes the runner, which applies it from the next candle it processes); the strategy,
  its parameters, the symbols and the timeframe only while the bot is stopped (409 otherwise).
* **stop**: with a runner holding the bot (an unexpired lease), ``status`` becomes ``stopping``
  and that runner finishes the stop (closing the positions when asked). When no runner holds
  it, a stop that closes positions is ``stopping`` too (the woken runner takes the bot to close
  them), and a plain stop is ``stopped`` at once: nothing runs, nothing is left to do.
* **delete**: only a stopped bot that no runner holds any more (409 otherwise).
* **default bot**: the user's first bot is their default (the seed-004 ``/bot/*`` routes act on
  it); deleting it makes the oldest remaining bot the default.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import Conflict, NotFound, UserError, ValidationFailed
from cryptoorchestrator.core.ids import new_uuid
from cryptoorchestrator.domain.accounts import TradingAccount
from cryptoorchestrator.domain.bots import (
    DESIRED_PAUSED,
    DESIRED_RUNNING,
    DESIRED_STOPPED,
    Bot,
    BotEvent,
    BotMode,
    BotRisk,
    BotStatus,
)
from cryptoorchestrator.domain.positions import Position
from cryptoorchestrator.domain.research import SavedStrategy
from cryptoorchestrator.services.accounts import PAPER, AccountService
from cryptoorchestrator.services.bot_settings import (
    DEFAULT_TIMEFRAME,
    BotChanges,
    BotSpec,
    build_risk,
    checked_timeframe,
    clean_name,
    invalid,
    mode_mismatch,
)
from cryptoorchestrator.services.orders import OrderService
from cryptoorchestrator.services.ports import UnitOfWork, UnitOfWorkFactory
from cryptoorchestrator.services.strategies import StrategyService

DEFAULT_SYMBOL = "BTC/USDT"
DEFAULT_STRATEGY = "sma_cross"
DEFAULT_BOT_NAME = "Default bot"
MAX_SYMBOLS = 20
#: Settings that change what the bot trades: editable only while it is stopped.
CONFIG_FIELDS = frozenset({"strategy_type", "params", "strategy_id", "symbols", "timeframe"})


class BotAlreadyActive(UserError):
    code = "BOT_ALREADY_ACTIVE"
    default_message = "The bot is already running."


class BotNotActive(UserError):
    code = "BOT_NOT_ACTIVE"
    default_message = "The bot is not running."


class BotSupervisor(Protocol):
    """The seam to the bot runtime (implemented by ``services/bot_runner.py``)."""

    async def wake(self, bot_id: str) -> None:
        """The bot's desired state changed: the runner that holds it (or the next to take it)
        acts on it soon. Never blocks on the bot's work."""


class NoRunnerAttached:
    """The supervisor until a bot runner is attached (``BotService.supervisor = runner``).

    ``wake`` does nothing *only* because no runner exists yet to be told: the desired state is
    already stored, and a runner reads it when it starts (``bots.wanted_running``). Bootstrap
    attaches the real runner; nothing else should stay on this one."""

    async def wake(self, bot_id: str) -> None:
        return None


@dataclass(frozen=True, slots=True)
class BotFigures:
    """A bot's status figures. "Today" starts at 00:00 UTC."""

    bot: Bot
    uptime_seconds: int
    signals_today: int
    daily_pnl: Decimal
    daily_trades: int
    win_rate: float | None
    open_positions: list[Position]


def _not_found(bot_id: str) -> NotFound:
    return NotFound("Bot not found.", details={"bot_id": bot_id})


def _name_taken(name: str) -> Conflict:
    return Conflict(f"You already have a bot named '{name}'.", details={"field": "name", "name": name})


def utc_midnight(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


class BotService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        *,
        clock: Clock,
        strategies: StrategyService,
        accounts: AccountService,
        orders: OrderService,
        supervisor: BotSupervisor,
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._strategies = strategies
        self._accounts = accounts
        self._orders = orders
        #: Told about every desired-state change; bootstrap attaches the bot runner here.
        self.supervisor = supervisor

    # --- validation ----------------------------------------------------------------------------

    def _params(self, strategy_type: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Validated parameters with defaults (404 STRATEGY_NOT_FOUND for an unknown type, 422
        naming the parameter, under ``params``)."""
        try:
            return self._strategies.validate(strategy_type, dict(params or {}))
        except ValidationFailed as exc:
            errors = [
                {**error, "loc": ["body", "params", *error.get("loc", [])]}
                for error in exc.details.get("errors", [])
            ]
            message = exc.message
            if errors:
                where = ".".join(str(part) for part in errors[0]["loc"][1:])
                message = f"{where}: {errors[0].get('msg', '')}"
            raise ValidationFailed(message, details={**exc.details, "errors": errors}) from None

    async def _strategy(self, user_id: int, spec: BotSpec) -> tuple[str, dict[str, Any], str | None]:
        if spec.strategy_id is not None:
            saved = await self._strategies.get(user_id, spec.strategy_id)  # 404 STRATEGY_NOT_FOUND
            merged = {**saved.params, **(spec.params or {})}
            return saved.strategy_type, self._params(saved.strategy_type, merged), saved.id
        if not spec.strategy_type:
            raise invalid(("strategy",), "give strategy_id (a saved strategy) or strategy {type, params}")
        return spec.strategy_type, self._params(spec.strategy_type, spec.params), None

    async def _account(self, user_id: int, spec: BotSpec) -> tuple[TradingAccount, BotMode]:
        account = await self._accounts.resolve(user_id, spec.account_id)  # 404 for another user's
        mode = BotMode.PAPER if account.kind == PAPER else BotMode.LIVE
        if spec.mode is not None and spec.mode != mode.value:
            raise mode_mismatch(spec.mode, account)
        if spec.exchange is not None and spec.exchange.lower() != account.exchange.lower():
            raise UserError(
                f"The account trades on {account.exchange}, not {spec.exchange}: give the "
                "account_id of an account on that exchange.",
                details={"exchange": spec.exchange, "account_exchange": account.exchange},
            )
        return account, mode

    async def _symbols(self, account: TradingAccount, symbols: Sequence[str]) -> tuple[str, ...]:
        """Unified symbols: every accepted spelling resolves (404 INVALID_SYMBOL when unknown)."""
        if not symbols:
            raise invalid(("symbols",), "give at least one symbol")
        if len(symbols) > MAX_SYMBOLS:
            raise invalid(("symbols",), f"at most {MAX_SYMBOLS} symbols")
        resolved: list[str] = []
        for symbol in symbols:
            unified = (await self._orders.instrument(account, symbol)).symbol
            if unified in resolved:
                raise invalid(("symbols",), f"{unified} is given twice")
            resolved.append(unified)
        return tuple(resolved)

    async def _new_bot(self, user_id: int, spec: BotSpec) -> Bot:
        name = clean_name(spec.name)
        timeframe = checked_timeframe(spec.timeframe)
        risk = build_risk(BotRisk(), spec.risk)
        strategy_type, params, strategy_id = await self._strategy(user_id, spec)
        account, mode = await self._account(user_id, spec)
        symbols = await self._symbols(account, spec.symbols)
        now = self._clock.now()
        return Bot(
            id=new_uuid(),
            user_id=user_id,
            name=name,
            strategy_type=strategy_type,
            params=params,
            strategy_id=strategy_id,
            account_id=account.id,
            exchange=account.exchange,
            mode=mode,
            symbols=symbols,
            timeframe=timeframe,
            risk=risk,
            status=BotStatus.STOPPED,
            desired=DESIRED_STOPPED,
            error=None,
            is_default=False,
            created_at=now,
            updated_at=now,
            started_at=None,
            stopped_at=None,
            last_candle_at=None,
            state={},
        )

    # --- records -------------------------------------------------------------------------------

    async def _event(
        self, uow: UnitOfWork, bot: Bot, message: str, *, kind: str = "state", **data: Any
    ) -> None:
        await uow.bot_events.add(
            BotEvent(
                id=None,
                bot_id=bot.id,
                user_id=bot.user_id,
                kind=kind,
                message=message,
                data=data,
                timestamp=self._clock.now(),
            )
        )

    @staticmethod
    async def _owned(uow: UnitOfWork, user_id: int, bot_id: str) -> Bot:
        bot = await uow.bots.get_for_user(bot_id, user_id)
        if bot is None:
            raise _not_found(bot_id)
        return bot

    async def create(
        self, user_id: int, spec: BotSpec, *, idempotency_key: str | None = None
    ) -> tuple[Bot, bool]:
        """Validate and store a stopped bot: ``(bot, True)``; ``(first bot, False)`` when
        ``idempotency_key`` was already used for the same request (409 for another request).
        The user's first bot becomes their default bot."""
        request_hash = spec.fingerprint()
        if idempotency_key is not None:
            replay = await self._replay(user_id, idempotency_key, request_hash)
            if replay is not None:
                return replay, False
        bot = await self._new_bot(user_id, spec)
        try:
            async with self._uow() as uow:
                if await uow.bots.get_by_name(user_id, bot.name) is not None:
                    raise _name_taken(bot.name)
                bot = dataclasses.replace(bot, is_default=await uow.bots.default_for_user(user_id) is None)
                stored = await uow.bots.add(bot, idempotency_key=idempotency_key, request_hash=request_hash)
                await self._event(uow, stored, "Bot created", action="create")
                await uow.commit()
        except Conflict:
            # A concurrent request with the same key won the race: answer its bot.
            replay = await self._replay(user_id, idempotency_key, request_hash) if idempotency_key else None
            if replay is None:
                raise
            return replay, False
        return stored, True

    async def _replay(self, user_id: int, key: str, request_hash: str) -> Bot | None:
        async with self._uow() as uow:
            found = await uow.bots.get_by_idempotency_key(user_id, key)
        if found is None:
            return None
        bot, stored_hash = found
        if stored_hash != request_hash:
            raise Conflict(
                "This Idempotency-Key was already used for a different request.",
                details={"idempotency_key": key, "bot_id": bot.id},
            )
        return bot

    async def get(self, user_id: int, bot_id: str) -> Bot:
        async with self._uow() as uow:
            return await self._owned(uow, user_id, bot_id)

    async def list(
        self,
        user_id: int,
        *,
        status: str | None = None,
        exchange: str | None = None,
        mode: str | None = None,
        limit: int,
        offset: int,
    ) -> tuple[list[Bot], int]:
        """Newest first."""
        async with self._uow() as uow:
            return await uow.bots.list_for_user(
                user_id, status=status, exchange=exchange, mode=mode, limit=limit, offset=offset
            )

    # --- editing -------------------------------------------------------------------------------

    async def _config_changes(self, user_id: int, bot: Bot, changes: BotChanges) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if changes.strategy_type is not None or changes.params is not None:
            strategy_type = changes.strategy_type or bot.strategy_type
            base = bot.params if strategy_type == bot.strategy_type else {}
            params = self._params(strategy_type, {**base, **(changes.params or {})})
            if strategy_type != bot.strategy_type:
                fields.update(strategy_type=strategy_type, strategy_id=None)
            if params != bot.params:
                fields["params"] = params
        if changes.symbols is not None:
            account = await self._accounts.resolve(user_id, bot.account_id)
            symbols = await self._symbols(account, changes.symbols)
            if symbols != bot.symbols:
                fields["symbols"] = symbols
        if changes.timeframe is not None and changes.timeframe != bot.timeframe:
            fields["timeframe"] = checked_timeframe(changes.timeframe)
        return fields

    async def _changes(self, user_id: int, bot: Bot, changes: BotChanges) -> dict[str, Any]:
        fields = await self._config_changes(user_id, bot, changes)
        if changes.name is not None and clean_name(changes.name) != bot.name:
            fields["name"] = clean_name(changes.name)
        if changes.risk is not None:
            risk = build_risk(bot.risk, changes.risk)
            if risk != bot.risk:
                fields["risk"] = risk
        if changes.is_default is not None and changes.is_default != bot.is_default:
            fields["is_default"] = changes.is_default
        return fields

    async def update(self, user_id: int, bot_id: str, changes: BotChanges) -> Bot:
        """Apply ``changes`` (module docstring: what may change while the bot runs)."""
        fields = await self._changes(user_id, await self.get(user_id, bot_id), changes)
        async with self._uow() as uow:
            bot = await self._owned(uow, user_id, bot_id)  # again: it may have started meanwhile
            if not fields:
                return bot
            edited = sorted(CONFIG_FIELDS & set(fields))
            if edited and bot.is_active:
                raise Conflict(
                    "The bot is running: stop it before changing its strategy, parameters, symbols or "
                    "timeframe (its name and risk settings can change while it runs).",
                    details={"fields": edited, "status": bot.status.value},
                )
            if "name" in fields and await uow.bots.get_by_name(user_id, fields["name"]) is not None:
                raise _name_taken(fields["name"])
            now = self._clock.now()
            if fields.get("is_default"):
                previous = await uow.bots.default_for_user(user_id)
                if previous is not None:
                    await uow.bots.update(previous.id, now=now, is_default=False)
            bot = await uow.bots.update(bot_id, now=now, **fields)
            await self._event(uow, bot, "Settings changed", action="update", fields=sorted(fields))
            await uow.commit()
        if "risk" in fields and bot.is_active:
            await self.supervisor.wake(bot_id)
        return bot

    async def delete(self, user_id: int, bot_id: str) -> None:
        """Delete a stopped bot with its events (its orders and fills stay, tagged with its id)."""
        now = self._clock.now()
        async with self._uow() as uow:
            bot = await self._owned(uow, user_id, bot_id)
            if bot.is_active:
                raise Conflict(
                    f"The bot is {bot.desired}: stop it first (POST /bots/{bot_id}/stop), then delete it.",
                    details={"status": bot.status.value, "desired": bot.desired},
                )
            if await uow.bot_leases.holder(bot_id, now=now) is not None:
                raise Conflict(
                    "The bot is still stopping: try again in a few seconds.",
                    details={"status": bot.status.value},
                )
            await uow.bots.delete(bot_id)
            if bot.is_default:
                await self._promote_default(uow, user_id, now)
            await uow.commit()

    @staticmethod
    async def _promote_default(uow: UnitOfWork, user_id: int, now: datetime) -> None:
        """The oldest remaining bot becomes the default."""
        _, total = await uow.bots.list_for_user(user_id, limit=1, offset=0)
        if total:
            oldest, _ = await uow.bots.list_for_user(user_id, limit=1, offset=total - 1)
            await uow.bots.update(oldest[0].id, now=now, is_default=True)

    # --- steering ------------------------------------------------------------------------------

    async def start(self, user_id: int, bot_id: str) -> Bot:
        """Desired running, status starting (400 BOT_ALREADY_ACTIVE when it is running or
        paused; a bot in error may be started again)."""
        async with self._uow() as uow:
            bot = await self._owned(uow, user_id, bot_id)
            if bot.is_active and bot.status != BotStatus.ERROR:
                raise BotAlreadyActive(
                    f"The bot is already {bot.desired}: stop it first to start it again.",
                    details={"bot_id": bot_id, "status": bot.status.value, "desired": bot.desired},
                )
            now = self._clock.now()
            bot = await uow.bots.update(
                bot_id, now=now, desired=DESIRED_RUNNING, status=BotStatus.STARTING, error=None
            )
            await self._event(uow, bot, "Start requested", action="start")
            await uow.commit()
        await self.supervisor.wake(bot_id)
        return bot

    async def stop(self, user_id: int, bot_id: str, *, close_positions: bool = False) -> Bot:
        """Desired stopped (400 BOT_NOT_ACTIVE when it already is); ``state["close_positions"]``
        tells the runner whether to close the bot's positions (module docstring)."""
        async with self._uow() as uow:
            bot = await self._owned(uow, user_id, bot_id)
            if not bot.is_active:
                raise BotNotActive(
                    "The bot is not running.", details={"bot_id": bot_id, "status": bot.status.value}
                )
            now = self._clock.now()
            held = await uow.bot_leases.holder(bot_id, now=now) is not None
            fields: dict[str, Any] = {
                "desired": DESIRED_STOPPED,
                "state": {**bot.state, "close_positions": close_positions},
            }
            if held or close_positions:
                # The runner holding it finishes the stop; with nobody holding it, the woken
                # runner takes it to close its positions (bot_runner L2).
                fields["status"] = BotStatus.STOPPING
            else:  # nobody runs it and there is nothing to close: it is stopped now
                fields.update(status=BotStatus.STOPPED, stopped_at=now)
            bot = await uow.bots.update(bot_id, now=now, **fields)
            await self._event(uow, bot, "Stop requested", action="stop", close_positions=close_positions)
            await uow.commit()
        await self.supervisor.wake(bot_id)
        return bot

    async def _set_desired(self, user_id: int, bot_id: str, desired: str, action: str) -> Bot:
        async with self._uow() as uow:
            bot = await self._owned(uow, user_id, bot_id)
            if not bot.is_active:
                raise BotNotActive(
                    f"The bot is stopped: start it (POST /bots/{bot_id}/start) before you {action} it.",
                    details={"bot_id": bot_id, "status": bot.status.value},
                )
            if bot.desired == desired:
                return bot  # already asked for: nothing changes
            bot = await uow.bots.update(bot_id, now=self._clock.now(), desired=desired)
            await self._event(uow, bot, f"{action.capitalize()} requested", action=action)
            await uow.commit()
        await self.supervisor.wake(bot_id)
        return bot

    async def pause(self, user_id: int, bot_id: str) -> Bot:
        """Desired paused: the runner keeps the bot's positions and protective orders but opens
        nothing new (400 BOT_NOT_ACTIVE when the bot is stopped; pausing twice changes nothing)."""
        return await self._set_desired(user_id, bot_id, DESIRED_PAUSED, "pause")

    async def resume(self, user_id: int, bot_id: str) -> Bot:
        """Desired running again (400 BOT_NOT_ACTIVE when the bot is stopped)."""
        return await self._set_desired(user_id, bot_id, DESIRED_RUNNING, "resume")

    # --- reading -------------------------------------------------------------------------------

    async def figures(self, user_id: int, bot_id: str) -> BotFigures:
        """Uptime (while running or paused, since the runner started it), signals today
        (``signal`` events since 00:00 UTC), daily P&L (realised P&L of the bot's fills today)
        and trades, and the open positions of the bot's symbols on its account. An account may
        be shared by several bots, and positions are per (account, symbol): a position in one of
        the bot's symbols counts here even when another bot (or the user) opened it."""
        now = self._clock.now()
        midnight = utc_midnight(now)
        async with self._uow() as uow:
            bot = await self._owned(uow, user_id, bot_id)
            signals = await uow.bot_events.count_since(bot.id, kind="signal", since=midnight)
            summary = await uow.fills.summary_for_user(user_id, bot_id=bot.id, start=midnight)
            positions = await uow.positions.list(bot.account_id, open_only=True)
        uptime = 0
        if bot.status in (BotStatus.RUNNING, BotStatus.PAUSED) and bot.started_at is not None:
            uptime = max(0, int((now - bot.started_at).total_seconds()))
        closing = int(summary["closing_count"])
        return BotFigures(
            bot=bot,
            uptime_seconds=uptime,
            signals_today=signals,
            daily_pnl=summary["realized_pnl"],
            daily_trades=int(summary["count"]),
            win_rate=round(100.0 * int(summary["wins"]) / closing, 4) if closing else None,
            open_positions=[p for p in positions if p.symbol in bot.symbols and not p.is_flat],
        )

    async def events(
        self, user_id: int, bot_id: str, *, kind: str | None = None, limit: int, offset: int
    ) -> tuple[builtins.list[BotEvent], int]:
        """Newest first."""
        async with self._uow() as uow:
            await self._owned(uow, user_id, bot_id)
            return await uow.bot_events.list_for_bot(bot_id, kind=kind, limit=limit, offset=offset)

    # --- seed 001: a saved strategy run as a bot -------------------------------------------------

    async def _strategy_bot(self, user_id: int, strategy_id: str) -> tuple[SavedStrategy, Bot | None]:
        """The saved strategy and the bot named after it (which may run something else)."""
        saved = await self._strategies.get(user_id, strategy_id)  # 404 STRATEGY_NOT_FOUND
        async with self._uow() as uow:
            return saved, await uow.bots.get_by_name(user_id, saved.name)

    async def start_strategy(
        self, user_id: int, strategy_id: str, *, symbol: str | None = None, timeframe: str | None = None
    ) -> Bot:
        """Run a saved strategy as a bot named after it, on the paper account: created on first
        use (``symbol`` and ``timeframe`` default to BTC/USDT and 1h), else reused, with the
        strategy's current parameters (and ``symbol``/``timeframe`` when given)."""
        saved, bot = await self._strategy_bot(user_id, strategy_id)
        if bot is not None and bot.strategy_id != saved.id:
            raise Conflict(
                f"A bot named '{saved.name}' already runs something else: rename it, or create a bot "
                "for this strategy with POST /bots.",
                details={"bot_id": bot.id},
            )
        if bot is None:
            spec = BotSpec(
                name=saved.name,
                strategy_id=saved.id,
                symbols=(symbol or DEFAULT_SYMBOL,),
                timeframe=timeframe or DEFAULT_TIMEFRAME,
            )
            bot, _ = await self.create(user_id, spec)
        elif not bot.is_active:
            changes = BotChanges(
                strategy_type=saved.strategy_type,
                params=saved.params,
                symbols=(symbol,) if symbol else None,
                timeframe=timeframe,
            )
            bot = await self.update(user_id, bot.id, changes)
        return await self.start(user_id, bot.id)

    async def stop_strategy(self, user_id: int, strategy_id: str, *, close_positions: bool = False) -> Bot:
        saved, bot = await self._strategy_bot(user_id, strategy_id)
        if bot is None or bot.strategy_id != saved.id:
            raise BotNotActive("The strategy is not running.", details={"strategy_id": strategy_id})
        return await self.stop(user_id, bot.id, close_positions=close_positions)

    # --- seed 004: the user's default bot --------------------------------------------------------

    async def default_bot(self, user_id: int) -> Bot | None:
        async with self._uow() as uow:
            return await uow.bots.default_for_user(user_id)

    async def _exchange_account(self, user_id: int) -> str:
        for account in await self._accounts.list(user_id):
            if account.kind != PAPER and account.active:
                return account.id
        raise UserError(
            "paper_trading is false, but you have no exchange account: add one first, or trade on paper.",
            details={"paper_trading": False},
        )

    async def start_default(
        self, user_id: int, *, paper_trading: bool | None = None, strategies: Sequence[str] | None = None
    ) -> Bot:
        """Start the default bot; without one, create it (``strategies[0]`` or sma_cross with
        its defaults, BTC/USDT 1h, on paper unless ``paper_trading`` is false)."""
        if strategies is not None and len(strategies) > 1:
            raise invalid(("strategies",), "a bot runs one strategy: name one")
        bot = await self.default_bot(user_id)
        if bot is None:
            account_id = PAPER if paper_trading is not False else await self._exchange_account(user_id)
            spec = BotSpec(
                name=DEFAULT_BOT_NAME,
                strategy_type=strategies[0] if strategies else DEFAULT_STRATEGY,
                account_id=account_id,
                symbols=(DEFAULT_SYMBOL,),
            )
            bot, _ = await self.create(user_id, spec)
        else:
            if paper_trading is not None and paper_trading != (bot.mode == BotMode.PAPER):
                raise UserError(
                    f"Your default bot '{bot.name}' trades {bot.mode.value}: start another bot with "
                    "POST /bots/{id}/start, or make it the default (PATCH /bots/{id} is_default).",
                    details={"bot_id": bot.id, "mode": bot.mode.value},
                )
            if strategies and strategies[0] != bot.strategy_type:
                raise UserError(
                    f"Your default bot '{bot.name}' runs {bot.strategy_type}: change it with "
                    f"PATCH /bots/{bot.id} while it is stopped.",
                    details={"bot_id": bot.id, "strategy": bot.strategy_type},
                )
        return await self.start(user_id, bot.id)

    async def stop_default(self, user_id: int, *, close_positions: bool = False) -> Bot:
        bot = await self.default_bot(user_id)
        if bot is None:
            raise BotNotActive("You have no bot to stop.")
        return await self.stop(user_id, bot.id, close_positions=close_positions)
