"""Positions, leverage, trades, the account and its balances, the portfolio, P&L and rebalancing."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from cryptoorchestrator.api.decimal_json import DecimalJSONRoute
from cryptoorchestrator.api.deps import ContainerDep, PageDep, PrincipalDep, json_response
from cryptoorchestrator.api.routers.orders import order_out, time_filter
from cryptoorchestrator.domain.accounts import TradeRecord, TradingAccount
from cryptoorchestrator.schemas.common import ERROR_RESPONSES
from cryptoorchestrator.schemas.trading import (
    AccountOut,
    BalanceOut,
    BalancesOut,
    CloseAllRequest,
    ClosePositionRequest,
    CloseResult,
    LeverageOut,
    LeverageRequest,
    PaperResetRequest,
    PerformanceOut,
    PnlOut,
    PortfolioOut,
    PositionOut,
    PositionsOut,
    RebalanceOut,
    RebalanceRequest,
    RebalanceTrade,
    TradeOut,
    TradesPage,
    TradeSummary,
)
from cryptoorchestrator.services.portfolio import PositionView, Valuation, currency_of

router = APIRouter(tags=["portfolio"], responses=ERROR_RESPONSES, route_class=DecimalJSONRoute)

AccountQuery = Annotated[
    str | None, Query(max_length=64, description="An account id; the paper account by default.")
]


def position_out(view: PositionView) -> PositionOut:
    p = view.position
    pct = None
    if view.unrealized is not None and p.entry_price and p.quantity:
        pct = float(view.unrealized / (abs(p.quantity) * p.entry_price) * 100)
    return PositionOut(
        symbol=p.symbol,
        account_id=p.account_id,
        kind=p.kind,
        side=p.side,
        quantity=abs(p.quantity),
        entry_price=p.entry_price,
        mark_price=view.mark,
        notional=None if view.mark is None else p.notional(view.mark),
        unrealized_pnl=view.unrealized,
        unrealized_pnl_pct=pct,
        realized_pnl=p.realized_pnl,
        fees_paid=p.fees_paid,
        leverage=p.leverage,
        margin=p.margin,
        liquidation_price=view.liquidation,
        stop_loss=view.stop_loss,
        take_profit=view.take_profit,
        opened_at=p.opened_at,
        updated_at=p.updated_at,
    )


def positions_page(views: list[PositionView], limit: int, offset: int) -> PositionsOut:
    chosen = views[offset : offset + limit]
    return PositionsOut(
        items=[position_out(v) for v in chosen],
        total=len(views),
        limit=limit,
        offset=offset,
        total_unrealized_pnl=sum((v.unrealized or Decimal(0) for v in views), Decimal(0)),
        total_margin_used=sum((v.position.margin for v in views), Decimal(0)),
    )


def trade_out(record: TradeRecord) -> TradeOut:
    return TradeOut(
        id=record.id,
        order_id=record.order_id,
        trade_id=record.trade_id,
        account_id=record.account_id,
        symbol=record.symbol,
        side=record.side,
        price=record.price,
        quantity=record.quantity,
        notional=record.price * record.quantity,
        fee=record.fee,
        fee_asset=record.fee_asset,
        liquidity=record.liquidity,
        realized_pnl=record.realized_pnl,
        bot_id=record.bot_id,
        strategy=record.strategy,
        timestamp=record.timestamp,
    )


def account_out(account: TradingAccount, container: ContainerDep) -> AccountOut:
    paper = account.kind == "paper"
    return AccountOut(
        id=account.id,
        account_id=account.id,
        name=account.name,
        kind=account.kind,
        mode="paper" if paper else "live",
        exchange=account.exchange,
        status="active" if account.active else "disabled",
        currency=currency_of(account),
        starting_balances=container.accounts.starting_balances_of(account) if paper else None,
        created_at=account.created_at,
        updated_at=account.updated_at,
    )


def balances_out(valuation: Valuation, asset: str | None, now: datetime) -> BalancesOut:
    rows = [
        BalanceOut(asset=b.asset, free=b.free, locked=b.locked, total=b.total, value=value)
        for b, value in valuation.balances
        if asset is None or b.asset == asset.upper()
    ]
    free_cash = next((b.free for b, _ in valuation.balances if b.asset == valuation.currency), Decimal(0))
    return BalancesOut(
        account_id=valuation.account.id,
        currency=valuation.currency,
        balances=rows,
        total_equity=valuation.equity,
        available_margin=free_cash,
        used_margin=valuation.used_margin,
        unrealized_pnl=valuation.unrealized,
        updated_at=now,
    )


# --- positions --------------------------------------------------------------------------------


@router.get("/positions", response_model=PositionsOut)
async def list_positions(
    principal: PrincipalDep,
    container: ContainerDep,
    page: PageDep,
    symbol: Annotated[str | None, Query(max_length=40)] = None,
    side: Annotated[Literal["long", "short", "LONG", "SHORT"] | None, Query()] = None,
    account_id: AccountQuery = None,
) -> object:
    """Open positions with mark price, unrealised P&L, margin, liquidation price and protective orders."""
    views = await container.portfolio.positions(
        principal.user.id, account_id=account_id, symbol=symbol, side=side
    )
    return json_response(positions_page(views, page.limit, page.offset))


@router.post("/positions/close-all", response_model=CloseResult)
async def close_all_positions(
    principal: PrincipalDep, container: ContainerDep, body: CloseAllRequest | None = None
) -> object:
    """Close every open position (or those of `symbol`) with reduce-only market orders."""
    body = body or CloseAllRequest()
    orders, skipped = await container.portfolio.close_all(
        principal.user.id, account_id=body.account_id, symbol=body.symbol
    )
    return json_response(
        CloseResult(closed=len(orders), orders=[order_out(o) for o in orders], skipped=skipped)
    )


@router.post("/positions/{symbol:path}/close", response_model=CloseResult)
async def close_position(
    symbol: str, principal: PrincipalDep, container: ContainerDep, body: ClosePositionRequest | None = None
) -> object:
    """Close a position (or `quantity` of it): its stop loss and take profit are cancelled first.
    404 `POSITION_NOT_FOUND` when there is none."""
    body = body or ClosePositionRequest()
    orders = await container.portfolio.close_position(
        principal.user.id, symbol, account_id=body.account_id, quantity=body.quantity
    )
    return json_response(CloseResult(closed=len(orders), orders=[order_out(o) for o in orders]))


@router.put("/leverage/{symbol:path}", response_model=LeverageOut)
async def set_leverage(
    symbol: str, body: LeverageRequest, principal: PrincipalDep, container: ContainerDep
) -> object:
    """Leverage of a swap market (1 to the market's maximum); an open position's margin follows."""
    name, leverage, most, margin = await container.portfolio.set_leverage(
        principal.user.id, symbol, body.leverage, account_id=body.account_id
    )
    return json_response(LeverageOut(symbol=name, leverage=leverage, max_leverage=most, margin=margin))


# --- trades -----------------------------------------------------------------------------------


@router.get("/trades", response_model=TradesPage)
async def list_trades(
    principal: PrincipalDep,
    container: ContainerDep,
    page: PageDep,
    symbol: Annotated[str | None, Query(max_length=40)] = None,
    bot_id: Annotated[str | None, Query(max_length=64)] = None,
    account_id: AccountQuery = None,
    start_time: Annotated[str | None, Query(description="ISO 8601 or epoch ms")] = None,
    end_time: Annotated[str | None, Query(description="ISO 8601 or epoch ms")] = None,
) -> object:
    """Fills, newest first, with a `summary` of the whole selection (P&L, win rate, profit factor)."""
    resolved = None
    if symbol:
        account = await container.accounts.resolve(principal.user.id, account_id)
        resolved = (await container.orders.instrument(account, symbol)).symbol
    records, total, summary = await container.portfolio.trades(
        principal.user.id,
        limit=page.limit,
        offset=page.offset,
        symbol=resolved,
        bot_id=bot_id,
        account_id=account_id if account_id not in (None, "paper") else None,
        start=time_filter(start_time, "start_time"),
        end=time_filter(end_time, "end_time"),
    )
    return json_response(
        TradesPage(
            items=[trade_out(r) for r in records],
            total=total,
            limit=page.limit,
            offset=page.offset,
            summary=TradeSummary.model_validate(summary, from_attributes=True),
        )
    )


@router.get("/trades/{trade_id}", response_model=TradeOut)
async def get_trade(trade_id: str, principal: PrincipalDep, container: ContainerDep) -> object:
    return json_response(trade_out(await container.portfolio.trade(principal.user.id, trade_id)))


# --- account and portfolio --------------------------------------------------------------------


@router.get("/account", response_model=AccountOut)
async def get_account(
    principal: PrincipalDep, container: ContainerDep, account_id: AccountQuery = None
) -> object:
    """The trading account (the paper account unless `account_id` names another)."""
    account = await container.accounts.resolve(principal.user.id, account_id)
    return json_response(account_out(account, container))


@router.post("/account/reset", response_model=AccountOut)
async def reset_paper_account(
    principal: PrincipalDep, container: ContainerDep, body: PaperResetRequest | None = None
) -> object:
    """Reset the paper account: open orders cancelled, positions flattened, balances set to the
    starting balances (or to `balances`, which become the new starting balances)."""
    account = await container.portfolio.reset_paper(principal.user.id, body.balances if body else None)
    return json_response(account_out(account, container))


@router.get("/balance", response_model=BalancesOut)
async def get_balance(
    principal: PrincipalDep,
    container: ContainerDep,
    asset: Annotated[str | None, Query(max_length=16)] = None,
    account_id: AccountQuery = None,
) -> object:
    """Free, locked and total per asset, each valued in the account currency, and the equity."""
    valuation = await container.portfolio.valuation(principal.user.id, account_id=account_id)
    return json_response(balances_out(valuation, asset, container.clock.now()))


@router.get("/portfolio/balance", response_model=BalancesOut)
async def get_portfolio_balance(
    principal: PrincipalDep, container: ContainerDep, account_id: AccountQuery = None
) -> object:
    valuation = await container.portfolio.valuation(principal.user.id, account_id=account_id)
    return json_response(balances_out(valuation, None, container.clock.now()))


@router.get("/portfolio", response_model=PortfolioOut)
async def get_portfolio(
    principal: PrincipalDep, container: ContainerDep, account_id: AccountQuery = None
) -> object:
    """Total value, cash, positions value, P&L and the allocation by asset."""
    user_id = principal.user.id
    valuation = await container.portfolio.valuation(user_id, account_id=account_id)
    views = await container.portfolio.positions(user_id, account_id=valuation.account.id)
    _, open_total = await container.orders.list(
        user_id,
        account_id=valuation.account.id,
        status=["pending", "new", "partially_filled", "unknown"],
        limit=1,
        offset=0,
    )
    equity = valuation.equity
    allocation = [
        {
            "asset": balance.asset,
            "value": value,
            "weight": float(value / equity) if equity and value is not None else None,
        }
        for balance, value in valuation.balances
    ]
    cash_value = valuation.cash
    return json_response(
        PortfolioOut(
            account_id=valuation.account.id,
            currency=valuation.currency,
            total_value=equity,
            cash=cash_value,
            positions_value=equity - cash_value,
            unrealized_pnl=sum((v.unrealized or Decimal(0) for v in views), Decimal(0)),
            realized_pnl=sum((v.position.realized_pnl for v in views), Decimal(0)),
            open_positions=len(views),
            open_orders=open_total,
            allocation=allocation,
            updated_at=container.clock.now(),
        )
    )


@router.get("/portfolio/positions", response_model=PositionsOut)
async def get_portfolio_positions(
    principal: PrincipalDep, container: ContainerDep, page: PageDep, account_id: AccountQuery = None
) -> object:
    views = await container.portfolio.positions(principal.user.id, account_id=account_id)
    return json_response(positions_page(views, page.limit, page.offset))


@router.get("/portfolio/performance", response_model=PerformanceOut)
async def get_performance(
    principal: PrincipalDep,
    container: ContainerDep,
    period: Annotated[Literal["1d", "7d", "30d", "90d", "1y", "all"], Query()] = "30d",
    account_id: AccountQuery = None,
) -> object:
    """Daily equity snapshots over the period: returns, Sharpe, Sortino, maximum drawdown,
    volatility (the backtests' definitions), win rate and profit factor."""
    figures = await container.portfolio.performance(principal.user.id, period=period, account_id=account_id)
    return json_response(PerformanceOut.model_validate(figures))


@router.get("/pnl", response_model=PnlOut)
async def get_pnl(
    principal: PrincipalDep,
    container: ContainerDep,
    period: Annotated[Literal["daily", "weekly", "monthly", "all"], Query()] = "daily",
    account_id: AccountQuery = None,
) -> object:
    """Realised and unrealised P&L over the period, with `by_strategy` and `by_symbol`."""
    figures = await container.portfolio.pnl(principal.user.id, period=period, account_id=account_id)
    return json_response(PnlOut.model_validate(figures))


@router.post("/portfolio/rebalance", response_model=RebalanceOut)
async def rebalance(body: RebalanceRequest, principal: PrincipalDep, container: ContainerDep) -> object:
    """Move the account to target weights: the plan with `dry_run` (the default), then market orders
    (sells first) with `dry_run: false`."""
    valuation, planned, skipped = await container.portfolio.plan_rebalance(
        principal.user.id, body.targets, tolerance=body.tolerance, account_id=body.account_id
    )
    orders = []
    if not body.dry_run:
        placed, failed = await container.portfolio.rebalance(
            principal.user.id, planned, account_id=valuation.account.id
        )
        orders, skipped = [order_out(o) for o in placed], skipped + failed
    trades = [
        RebalanceTrade(
            symbol=t.symbol,
            asset=t.asset,
            side=t.side.value,
            quantity=t.quantity,
            price=t.price,
            notional=t.quantity * t.price,
            current_weight=float(t.current_weight),
            target_weight=float(t.target_weight),
        )
        for t in planned
    ]
    return json_response(
        RebalanceOut(
            dry_run=body.dry_run,
            account_id=valuation.account.id,
            currency=valuation.currency,
            total_value=valuation.equity,
            trades=trades,
            orders=orders,
            skipped=skipped,
        )
    )
