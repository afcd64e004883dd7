"""/bots: create, list, edit, steer and watch bots; seed 001's /strategies/{id}/start|stop and
seed 004's /bot/* (the user's default bot). The bot runtime does the trading (docs/design/bots.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from cryptoorchestrator.api.decimal_json import DecimalJSONRoute
from cryptoorchestrator.api.deps import ContainerDep, PageDep, PrincipalDep, json_response
from cryptoorchestrator.core.errors import ValidationFailed
from cryptoorchestrator.domain.bots import Bot, BotEvent, BotStatus
from cryptoorchestrator.schemas.bots import (
    BotActionOut,
    BotCreate,
    BotEventKind,
    BotEventOut,
    BotEventsPage,
    BotModeName,
    BotOut,
    BotPositionOut,
    BotRiskOut,
    BotsPage,
    BotStatusOut,
    BotUpdate,
    DailyPerformance,
    DefaultBotStartOut,
    DefaultBotStartRequest,
    DefaultBotStatusOut,
    DefaultBotStopOut,
    StopRequest,
    StrategyActivity,
    StrategyRunOut,
    StrategyStartRequest,
)
from cryptoorchestrator.schemas.common import ERROR_RESPONSES
from cryptoorchestrator.services.bot_settings import BotChanges, BotSpec
from cryptoorchestrator.services.bots import BotFigures

router = APIRouter(tags=["bots"], responses=ERROR_RESPONSES, route_class=DecimalJSONRoute)

#: Seed 003's statuses.
_STATUS_ALIASES = {"active": "running", "inactive": "stopped"}
_STATUSES = frozenset(s.value for s in BotStatus)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        description="A repeat with the same key answers the first bot instead of creating another.",
    ),
]


def bot_out(bot: Bot) -> BotOut:
    risk = bot.risk
    return BotOut(
        id=bot.id,
        name=bot.name,
        strategy_type=bot.strategy_type,
        strategy_id=bot.strategy_id,
        params=bot.params,
        account_id=bot.account_id,
        exchange=bot.exchange,
        mode=bot.mode.value,
        symbols=list(bot.symbols),
        symbol=bot.symbols[0],
        timeframe=bot.timeframe,
        risk=BotRiskOut(
            risk_per_trade=risk.risk_per_trade,
            stop_loss=risk.stop_loss,
            take_profit=risk.take_profit,
            trailing_stop=risk.trailing_stop,
            leverage=risk.leverage,
            max_open_positions=risk.max_open_positions,
            max_position_fraction=risk.max_position_fraction,
        ),
        status=bot.status.value,
        desired=bot.desired,  # type: ignore[arg-type]
        error=bot.error,
        is_default=bot.is_default,
        created_at=bot.created_at,
        updated_at=bot.updated_at,
        started_at=bot.started_at,
        stopped_at=bot.stopped_at,
        last_candle_at=bot.last_candle_at,
    )


def action_out(bot: Bot, message: str) -> BotActionOut:
    return BotActionOut(
        message=message,
        bot_id=bot.id,
        status=bot.status.value,
        desired=bot.desired,  # type: ignore[arg-type]
        bot=bot_out(bot),
    )


def status_out(figures: BotFigures) -> BotStatusOut:
    bot = figures.bot
    return BotStatusOut(
        bot_id=bot.id,
        status=bot.status.value,
        desired=bot.desired,  # type: ignore[arg-type]
        error=bot.error,
        mode=bot.mode.value,
        uptime_seconds=figures.uptime_seconds,
        started_at=bot.started_at,
        stopped_at=bot.stopped_at,
        last_candle_at=bot.last_candle_at,
        signals_today=figures.signals_today,
        daily_pnl=figures.daily_pnl,
        daily_trades=figures.daily_trades,
        win_rate=figures.win_rate,
        open_positions=[
            BotPositionOut(
                symbol=p.symbol,
                side=p.side,
                quantity=abs(p.quantity),
                entry_price=p.entry_price,
                realized_pnl=p.realized_pnl,
                opened_at=p.opened_at,
            )
            for p in figures.open_positions
        ],
    )


def event_out(event: BotEvent) -> BotEventOut:
    return BotEventOut(
        id=event.id or 0,
        bot_id=event.bot_id,
        kind=event.kind,  # type: ignore[arg-type]
        message=event.message,
        data=event.data,
        timestamp=event.timestamp,
    )


def _status_filter(value: str | None) -> str | None:
    if not value:
        return None
    text = _STATUS_ALIASES.get(value.strip().lower(), value.strip().lower())
    if text not in _STATUSES:
        raise ValidationFailed(
            f"Unknown bot status {value!r}.",
            details={
                "errors": [{"loc": ["query", "status"], "msg": "unknown status", "type": "enum"}],
                "allowed": sorted(_STATUSES),
            },
        )
    return text


# --- /bots ------------------------------------------------------------------------------------------


@router.post("/bots", status_code=status.HTTP_201_CREATED, response_model=BotOut)
async def create_bot(
    body: BotCreate, principal: PrincipalDep, container: ContainerDep, idempotency_key: IdempotencyKey = None
) -> object:
    """Create a stopped bot: a saved strategy (`strategy_id`, `params` override its parameters)
    or an inline one (`strategy: {"type", "params"}`), on the paper account (default) or an
    exchange account (`account_id`): `mode` follows the account. Symbols in any spelling
    (`BTCUSDT`, `BTC-USDT`); risk fractions are decimals (`0.02` = 2 %). 409 when the name is
    taken. The user's first bot becomes their default bot (the `/bot/*` routes)."""
    strategy_type, params = body.strategy_fields()
    spec = BotSpec(
        name=body.name,
        symbols=body.symbol_list() or (),
        strategy_id=body.strategy_id,
        strategy_type=strategy_type,
        params=params,
        account_id=body.account_id,
        mode=body.mode,
        exchange=body.exchange,
        timeframe=body.timeframe,
        risk=body.all_risk(),
    )
    bot, created = await container.bots.create(principal.user.id, spec, idempotency_key=idempotency_key)
    response = json_response(bot_out(bot), status.HTTP_201_CREATED)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@router.get("/bots", response_model=BotsPage)
async def list_bots(
    principal: PrincipalDep,
    container: ContainerDep,
    page: PageDep,
    status_: Annotated[
        str | None, Query(alias="status", max_length=16, description="stopped, starting, running, ...")
    ] = None,
    exchange: Annotated[str | None, Query(max_length=50)] = None,
    mode: Annotated[BotModeName | None, Query()] = None,
) -> object:
    """The user's bots, newest first."""
    bots, total = await container.bots.list(
        principal.user.id,
        status=_status_filter(status_),
        exchange=exchange.strip().lower() if exchange else None,
        mode=mode,
        limit=page.limit,
        offset=page.offset,
    )
    return json_response(
        BotsPage(items=[bot_out(b) for b in bots], total=total, limit=page.limit, offset=page.offset)
    )


@router.get("/bots/{bot_id}", response_model=BotOut)
async def get_bot(bot_id: str, principal: PrincipalDep, container: ContainerDep) -> object:
    return json_response(bot_out(await container.bots.get(principal.user.id, bot_id)))


@router.patch("/bots/{bot_id}", response_model=BotOut)
async def update_bot(
    bot_id: str, body: BotUpdate, principal: PrincipalDep, container: ContainerDep
) -> object:
    """Change what is sent. The strategy, its parameters, the symbols and the timeframe change
    only while the bot is stopped (409 otherwise); the name, the risk settings (the runner
    applies them from its next candle) and `is_default` change at any time."""
    strategy_type, params = body.strategy_fields()
    changes = BotChanges(
        name=body.name,
        strategy_type=strategy_type,
        params=params,
        symbols=body.symbol_list(),
        timeframe=body.timeframe,
        risk=body.risk_changes() if body.risk is not None else None,
        is_default=body.is_default,
    )
    return json_response(bot_out(await container.bots.update(principal.user.id, bot_id, changes)))


@router.delete("/bots/{bot_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_bot(bot_id: str, principal: PrincipalDep, container: ContainerDep) -> Response:
    """Delete a stopped bot and its events (409 while it runs: stop it first). Its orders and
    fills stay."""
    await container.bots.delete(principal.user.id, bot_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/bots/{bot_id}/start", response_model=BotActionOut)
async def start_bot(bot_id: str, principal: PrincipalDep, container: ContainerDep) -> object:
    """Ask the bot to run: `status` becomes `starting` until the runner takes it. 400
    `BOT_ALREADY_ACTIVE` when it is running or paused."""
    bot = await container.bots.start(principal.user.id, bot_id)
    return json_response(action_out(bot, "Bot started successfully"))


@router.post("/bots/{bot_id}/stop", response_model=BotActionOut)
async def stop_bot(
    bot_id: str, principal: PrincipalDep, container: ContainerDep, body: StopRequest | None = None
) -> object:
    """Ask the bot to stop (`close_positions: true` closes its positions as it stops). 400
    `BOT_NOT_ACTIVE` when it is stopped."""
    close = body.close_positions if body else False
    bot = await container.bots.stop(principal.user.id, bot_id, close_positions=close)
    return json_response(action_out(bot, "Bot stopped successfully"))


@router.post("/bots/{bot_id}/pause", response_model=BotActionOut)
async def pause_bot(bot_id: str, principal: PrincipalDep, container: ContainerDep) -> object:
    """Keep the bot's positions and protective orders but open nothing new. 400
    `BOT_NOT_ACTIVE` when it is stopped."""
    bot = await container.bots.pause(principal.user.id, bot_id)
    return json_response(action_out(bot, "Bot paused"))


@router.post("/bots/{bot_id}/resume", response_model=BotActionOut)
async def resume_bot(bot_id: str, principal: PrincipalDep, container: ContainerDep) -> object:
    """Run a paused bot again. 400 `BOT_NOT_ACTIVE` when it is stopped."""
    bot = await container.bots.resume(principal.user.id, bot_id)
    return json_response(action_out(bot, "Bot resumed"))


@router.get("/bots/{bot_id}/status", response_model=BotStatusOut)
async def bot_status(bot_id: str, principal: PrincipalDep, container: ContainerDep) -> object:
    """Uptime, signals today, daily P&L and trades (since 00:00 UTC), and the open positions
    of the bot's symbols on its account (an account may be shared by several bots)."""
    return json_response(status_out(await container.bots.figures(principal.user.id, bot_id)))


@router.get("/bots/{bot_id}/events", response_model=BotEventsPage)
async def bot_events(
    bot_id: str,
    principal: PrincipalDep,
    container: ContainerDep,
    page: PageDep,
    kind: Annotated[BotEventKind | None, Query()] = None,
) -> object:
    """What the bot did and was asked, newest first."""
    events, total = await container.bots.events(
        principal.user.id, bot_id, kind=kind, limit=page.limit, offset=page.offset
    )
    return json_response(
        BotEventsPage(items=[event_out(e) for e in events], total=total, limit=page.limit, offset=page.offset)
    )


# --- seed 001: a saved strategy run as a bot ---------------------------------------------------------


@router.post("/strategies/{strategy_id}/start", response_model=StrategyRunOut)
async def start_strategy(
    strategy_id: str,
    principal: PrincipalDep,
    container: ContainerDep,
    body: StrategyStartRequest | None = None,
) -> object:
    """Run a saved strategy as a paper bot named after it (created on first use with `symbol`
    and `timeframe`, default BTC/USDT and 1h; reused afterwards)."""
    body = body or StrategyStartRequest()
    bot = await container.bots.start_strategy(
        principal.user.id, strategy_id, symbol=body.symbol, timeframe=body.timeframe
    )
    return json_response(
        StrategyRunOut(
            strategy_id=strategy_id,
            status="started",
            message="Strategy started successfully",
            started_at=bot.updated_at,
            bot_id=bot.id,
            bot_status=bot.status.value,
        )
    )


@router.post("/strategies/{strategy_id}/stop", response_model=StrategyRunOut)
async def stop_strategy(
    strategy_id: str, principal: PrincipalDep, container: ContainerDep, body: StopRequest | None = None
) -> object:
    """Stop the strategy's bot. 400 `BOT_NOT_ACTIVE` when it is not running."""
    close = body.close_positions if body else False
    bot = await container.bots.stop_strategy(principal.user.id, strategy_id, close_positions=close)
    return json_response(
        StrategyRunOut(
            strategy_id=strategy_id,
            status="stopped",
            message="Strategy stopped successfully",
            stopped_at=bot.updated_at,
            bot_id=bot.id,
            bot_status=bot.status.value,
        )
    )


# --- seed 004: the user's default bot ----------------------------------------------------------------


@router.get("/bot/status", response_model=DefaultBotStatusOut)
async def default_bot_status(principal: PrincipalDep, container: ContainerDep) -> object:
    """The default bot's state and today's figures (`stopped` and zeros without one)."""
    bot = await container.bots.default_bot(principal.user.id)
    if bot is None:
        out = DefaultBotStatusOut(
            status="stopped",
            trading_enabled=False,
            paper_trading=True,
            uptime_seconds=0,
            started_at=None,
            strategies=[],
            performance=DailyPerformance(daily_pnl=Decimal(0), daily_trades=0, win_rate=None),
            bot_id=None,
        )
        return json_response(out)
    figures = await container.bots.figures(principal.user.id, bot.id)
    bot = figures.bot
    running = bot.desired == "running"
    return json_response(
        DefaultBotStatusOut(
            status=bot.status.value,
            trading_enabled=running,
            paper_trading=bot.mode.value == "paper",
            uptime_seconds=figures.uptime_seconds,
            started_at=bot.started_at,
            strategies=[
                StrategyActivity(name=bot.strategy_type, enabled=running, signals_today=figures.signals_today)
            ],
            performance=DailyPerformance(
                daily_pnl=figures.daily_pnl, daily_trades=figures.daily_trades, win_rate=figures.win_rate
            ),
            bot_id=bot.id,
        )
    )


@router.post("/bot/start", response_model=DefaultBotStartOut)
async def start_default_bot(
    principal: PrincipalDep, container: ContainerDep, body: DefaultBotStartRequest | None = None
) -> object:
    """Start the default bot; the first call creates it (sma_cross with its defaults, BTC/USDT
    1h, on paper unless `paper_trading` is false). 400 `BOT_ALREADY_ACTIVE` when it runs."""
    body = body or DefaultBotStartRequest()
    bot = await container.bots.start_default(
        principal.user.id, paper_trading=body.paper_trading, strategies=body.strategies
    )
    return json_response(
        DefaultBotStartOut(
            status="started",
            message="Trading bot started successfully",
            paper_trading=bot.mode.value == "paper",
            active_strategies=[bot.strategy_type],
            bot_id=bot.id,
        )
    )


@router.post("/bot/stop", response_model=DefaultBotStopOut)
async def stop_default_bot(
    principal: PrincipalDep, container: ContainerDep, body: StopRequest | None = None
) -> object:
    """Stop the default bot; `open_positions` counts the positions still open in its symbols.
    400 `BOT_NOT_ACTIVE` when it is not running."""
    close = body.close_positions if body else False
    bot = await container.bots.stop_default(principal.user.id, close_positions=close)
    figures = await container.bots.figures(principal.user.id, bot.id)
    return json_response(
        DefaultBotStopOut(
            status="stopped",
            message="Trading bot stopped",
            open_positions=len(figures.open_positions),
            bot_id=bot.id,
        )
    )
