"""Positions, balances, trades, P&L, performance and rebalancing of a user's trading accounts.

Valuation: an account's equity is the sum over its assets of ``total * price`` in the account
currency (``USDT`` unless the account says otherwise; the currency itself is worth 1), plus the
unrealised P&L of its swap positions (their margin is already in the balances). Prices are the
latest the paper venue saw, else the market-data ticker; an asset that cannot be priced is
listed with no value and left out of the equity (said in ``unpriced``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import CryptoOrchestratorError, NotFound, OrderRejected
from cryptoorchestrator.domain.accounts import EquitySnapshot, TradeRecord, TradingAccount
from cryptoorchestrator.domain.ledger import AssetBalance, Ledger, sellable
from cryptoorchestrator.domain.orders import Order, OrderSide, OrderType
from cryptoorchestrator.domain.positions import Position, liquidation_price
from cryptoorchestrator.services import trade_stats
from cryptoorchestrator.services.orders import OrderRequest, OrderService
from cryptoorchestrator.services.ports import UnitOfWorkFactory

ZERO = Decimal(0)
DEFAULT_CURRENCY = "USDT"
PERIODS = {"1d": 1, "7d": 7, "30d": 30, "90d": 90, "1y": 365, "all": None}
PNL_PERIODS = ("daily", "weekly", "monthly", "all")
_SUMMARY_CAP = 100_000

PriceSource = Callable[[str, str], Awaitable[Decimal | None]]


@dataclass(frozen=True, slots=True)
class PositionView:
    position: Position
    mark: Decimal | None
    unrealized: Decimal | None
    liquidation: Decimal | None
    stop_loss: Decimal | None
    take_profit: Decimal | None


@dataclass(frozen=True, slots=True)
class Valuation:
    account: TradingAccount
    currency: str
    balances: list[tuple[AssetBalance, Decimal | None]]
    equity: Decimal
    cash: Decimal
    unrealized: Decimal
    used_margin: Decimal
    unpriced: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PlannedTrade:
    symbol: str
    asset: str
    side: OrderSide
    quantity: Decimal
    price: Decimal
    current_weight: Decimal
    target_weight: Decimal


def currency_of(account: TradingAccount) -> str:
    return str(account.settings.get("currency") or DEFAULT_CURRENCY)


def period_start(period: str, now: datetime) -> datetime | None:
    """Start of a ``/pnl`` period: today (UTC), the last 7 or 30 days, or everything."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "daily": midnight,
        "weekly": midnight - timedelta(days=6),
        "monthly": midnight - timedelta(days=29),
    }.get(period)


class PortfolioService:
    def __init__(
        self, uow_factory: UnitOfWorkFactory, *, clock: Clock, orders: OrderService, price: PriceSource
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self.orders = orders
        self._price = price

    async def _account(self, user_id: int, account_id: str | None) -> TradingAccount:
        return await self.orders.accounts.resolve(user_id, account_id)

    async def price(self, account: TradingAccount, asset: str, currency: str) -> Decimal | None:
        if asset == currency:
            return Decimal(1)
        try:
            return await self._price(account.exchange, f"{asset}/{currency}")
        except CryptoOrchestratorError:
            return None

    # --- positions -------------------------------------------------------------------------

    async def positions(
        self,
        user_id: int,
        *,
        account_id: str | None = None,
        symbol: str | None = None,
        side: str | None = None,
    ) -> list[PositionView]:
        account = await self._account(user_id, account_id)
        if symbol is not None:
            symbol = (await self.orders.instrument(account, symbol)).symbol
        async with self._uow() as uow:
            positions = await uow.positions.list(account.id, symbol=symbol, open_only=True)
            protective = [o for o in await uow.orders.open_orders(account_id=account.id) if o.reduce_only]
        views = []
        for position in positions:
            if side is not None and position.side != side.lower():
                continue
            views.append(await self._view(account, position, protective))
        return views

    async def _view(
        self, account: TradingAccount, position: Position, protective: list[Order]
    ) -> PositionView:
        instrument = await self.orders.instrument(account, position.symbol)
        mark = await self._price(account.exchange, position.symbol) if position.quantity else None
        stops = [o.stop_price for o in protective if o.symbol == position.symbol and o.type.is_stop]
        targets = [o.price for o in protective if o.symbol == position.symbol and o.type is OrderType.LIMIT]
        return PositionView(
            position=position,
            mark=mark,
            unrealized=None if mark is None else position.unrealized_pnl(mark),
            liquidation=liquidation_price(position, instrument.maintenance_margin_rate),
            stop_loss=stops[0] if stops else None,
            take_profit=targets[0] if targets else None,
        )

    async def close_position(
        self, user_id: int, symbol: str, *, account_id: str | None = None, quantity: Decimal | None = None
    ) -> list[Order]:
        """Close (all of, or ``quantity`` of) one position with a reduce-only market order, after
        cancelling its protective orders (they hold the base a spot exit sells)."""
        account = await self._account(user_id, account_id)
        instrument = await self.orders.instrument(account, symbol)
        async with self._uow() as uow:
            position = await uow.positions.get(account.id, instrument.symbol)
            protective = [
                o
                for o in await uow.orders.open_orders(account_id=account.id, symbol=instrument.symbol)
                if o.reduce_only
            ]
        if position is None or position.is_flat:
            raise NotFound(
                f"No open position in {instrument.symbol}.",
                details={"symbol": instrument.symbol},
                code="POSITION_NOT_FOUND",
            )
        for order in protective:
            await self.orders.cancel(user_id, order.id)
        wanted = abs(position.quantity) if quantity is None else min(quantity, abs(position.quantity))
        if instrument.is_spot:
            async with self._uow() as uow:
                ledger = Ledger(account.id, await uow.ledger.balances(account.id))
            wanted = sellable(ledger, instrument, wanted)  # an exit never sells more than is free
        side = OrderSide.SELL if position.quantity > 0 else OrderSide.BUY
        order = await self.orders.place(
            user_id,
            OrderRequest(
                symbol=instrument.symbol, side=side, quantity=wanted, reduce_only=True, account_id=account.id
            ),
        )
        return [order]

    async def close_all(
        self, user_id: int, *, account_id: str | None = None, symbol: str | None = None
    ) -> tuple[list[Order], list[dict[str, str]]]:
        views = await self.positions(user_id, account_id=account_id, symbol=symbol)
        orders: list[Order] = []
        skipped: list[dict[str, str]] = []
        for view in views:
            try:
                orders.extend(await self.close_position(user_id, view.position.symbol, account_id=account_id))
            except (OrderRejected, NotFound) as error:
                skipped.append({"symbol": view.position.symbol, "reason": error.message})
        return orders, skipped

    async def set_leverage(
        self, user_id: int, symbol: str, leverage: Decimal, *, account_id: str | None = None
    ) -> tuple[str, Decimal, Decimal, Decimal | None]:
        account = await self._account(user_id, account_id)
        instrument = await self.orders.instrument(account, symbol)
        if instrument.is_spot:
            raise OrderRejected(
                f"{instrument.symbol} is a spot market: leverage is always 1.",
                details={"symbol": instrument.symbol, "field": "leverage"},
            )
        if leverage > instrument.max_leverage:
            raise OrderRejected(
                f"The most leverage {instrument.symbol} allows is {instrument.max_leverage}.",
                details={"symbol": instrument.symbol, "max_leverage": str(instrument.max_leverage)},
            )
        now = self._clock.now()
        margin = None
        async with self.orders.account_lock(account.id), self._uow() as uow:
            position = await uow.positions.get(account.id, instrument.symbol)
            if position is not None and not position.is_flat:
                ledger = Ledger(account.id, await uow.ledger.balances_for_update(account.id))
                position = ledger.set_leverage(position, leverage, instrument=instrument, timestamp=now)
                await uow.positions.save(position)
                await uow.ledger.record(account.id, ledger.take_entries(), ledger.balances(), now=now)
                margin = position.margin
            chosen = {**account.settings.get("leverage", {}), instrument.symbol: str(leverage)}
            await uow.accounts.update(account.id, now=now, settings={**account.settings, "leverage": chosen})
            await uow.commit()
        self.orders.accounts.forget(account)
        return instrument.symbol, leverage, instrument.max_leverage, margin

    # --- trades and P&L --------------------------------------------------------------------

    async def trades(
        self, user_id: int, *, limit: int, offset: int, **filters: Any
    ) -> tuple[list[TradeRecord], int, trade_stats.TradeSummary]:
        async with self._uow() as uow:
            records, total = await uow.fills.list_for_user(user_id, limit=limit, offset=offset, **filters)
            everything, _ = await uow.fills.list_for_user(user_id, limit=_SUMMARY_CAP, offset=0, **filters)
        return records, total, trade_stats.summarize(everything)

    async def trade(self, user_id: int, trade_id: str) -> TradeRecord:
        async with self._uow() as uow:
            record = await uow.fills.get_for_user(trade_id, user_id)
        if record is None:
            raise NotFound("Trade not found.", details={"trade_id": trade_id})
        return record

    async def pnl(self, user_id: int, *, period: str, account_id: str | None = None) -> dict[str, Any]:
        account = await self._account(user_id, account_id)
        now = self._clock.now()
        start = period_start(period, now)
        async with self._uow() as uow:
            records, _ = await uow.fills.list_for_user(
                user_id, account_id=account.id, start=start, limit=_SUMMARY_CAP, offset=0
            )
        summary = trade_stats.summarize(records)
        unrealized = sum(
            (v.unrealized or ZERO for v in await self.positions(user_id, account_id=account.id)), ZERO
        )
        currency = currency_of(account)
        return {
            "period": period,
            "start": start,
            "end": now,
            "realized_pnl": summary.total_pnl,
            "unrealized_pnl": unrealized,
            "total_pnl": summary.total_pnl + unrealized,
            "fees": summary.fees.get(currency, ZERO),
            "trades": summary.trades,
            "winning_trades": summary.winning_trades,
            "losing_trades": summary.losing_trades,
            "win_rate": summary.win_rate,
            "profit_factor": summary.profit_factor,
            "largest_win": summary.largest_win,
            "largest_loss": summary.largest_loss,
            "average_win": summary.average_win,
            "average_loss": summary.average_loss,
            "by_strategy": trade_stats.breakdown(records, key="strategy"),
            "by_symbol": trade_stats.breakdown(records, key="symbol"),
        }

    # --- balances and value ----------------------------------------------------------------

    async def valuation(self, user_id: int, *, account_id: str | None = None) -> Valuation:
        account = await self._account(user_id, account_id)
        return await self.value_account(account)

    async def value_account(self, account: TradingAccount) -> Valuation:
        currency = currency_of(account)
        async with self._uow() as uow:
            balances = await uow.ledger.balances(account.id)
            positions = await uow.positions.list(account.id, open_only=True)
        rows: list[tuple[AssetBalance, Decimal | None]] = []
        equity = ZERO
        unpriced: list[str] = []
        for asset in sorted(balances):
            balance = balances[asset]
            if balance.total == 0:
                continue
            price = await self.price(account, asset, currency)
            value = None if price is None else balance.total * price
            if value is None:
                unpriced.append(asset)
            else:
                equity += value
            rows.append((balance, value))
        unrealized = ZERO
        used_margin = ZERO
        for position in positions:
            if position.kind != "spot" and position.quantity:
                mark = await self._price(account.exchange, position.symbol)
                unrealized += ZERO if mark is None else position.unrealized_pnl(mark)
                used_margin += position.margin
        cash = balances.get(currency, AssetBalance(currency))
        return Valuation(
            account, currency, rows, equity + unrealized, cash.total, unrealized, used_margin, unpriced
        )

    async def snapshot(self, account: TradingAccount) -> EquitySnapshot:
        """Store today's equity (one snapshot per day, overwritten until the day ends)."""
        valuation = await self.value_account(account)
        now = self._clock.now()
        snapshot = EquitySnapshot(
            account.id, now.astimezone(UTC).date(), valuation.equity, valuation.currency, now
        )
        async with self._uow() as uow:
            await uow.equity.upsert(snapshot)
            await uow.commit()
        return snapshot

    async def performance(
        self, user_id: int, *, period: str, account_id: str | None = None
    ) -> dict[str, Any]:
        account = await self._account(user_id, account_id)
        today = await self.snapshot(account)
        days = PERIODS[period]
        since: date | None = None if days is None else today.day - timedelta(days=days)
        async with self._uow() as uow:
            snapshots = await uow.equity.list(account.id)
            records, _ = await uow.fills.list_for_user(
                user_id,
                account_id=account.id,
                start=None if since is None else datetime(since.year, since.month, since.day, tzinfo=UTC),
                limit=_SUMMARY_CAP,
                offset=0,
            )
        before = [s for s in snapshots if since is not None and s.day <= since]
        window = [s for s in snapshots if since is None or s.day > since]
        initial = before[-1].equity if before else self._starting_value(account)
        figures = trade_stats.performance(window, initial=initial)
        summary = trade_stats.summarize(records)
        final = figures["final"] if figures["final"] is not None else today.equity
        base = figures["initial"]
        return {
            "period": period,
            "start_date": None if since is None else datetime(since.year, since.month, since.day, tzinfo=UTC),
            "end_date": self._clock.now(),
            "initial_balance": base,
            "final_balance": final,
            "total_return": None if base is None else final - base,
            "total_return_percentage": None if not base else float((final - base) / base * 100),
            "daily_returns": figures["daily_returns"],
            "metrics": {
                **figures["metrics"],
                "win_rate": summary.win_rate,
                "profit_factor": summary.profit_factor,
            },
        }

    def _starting_value(self, account: TradingAccount) -> Decimal | None:
        starting = self.orders.accounts.starting_balances_of(account)
        currency = currency_of(account)
        if starting and set(starting) <= {currency}:
            return starting.get(currency)
        return None

    # --- rebalancing -----------------------------------------------------------------------

    async def plan_rebalance(
        self, user_id: int, targets: dict[str, Decimal], *, tolerance: Decimal, account_id: str | None = None
    ) -> tuple[Valuation, list[PlannedTrade], list[dict[str, str]]]:
        """Trades that move a spot account to ``targets`` (asset or symbol -> weight of the
        equity); assets held but not named go to zero; the rest of the weight stays in the
        account currency. Sells come first, so buys have the cash."""
        valuation = await self.valuation(user_id, account_id=account_id)
        account, currency = valuation.account, valuation.currency
        weights: dict[str, Decimal] = {}
        for key, weight in targets.items():
            asset = key.upper().replace("-", "/").split("/")[0]
            if asset.endswith(currency) and asset != currency and "/" not in key:
                asset = asset[: -len(currency)]
            weights[asset] = weights.get(asset, ZERO) + weight
        held = {balance.asset: (balance, value) for balance, value in valuation.balances}
        trades: list[PlannedTrade] = []
        skipped: list[dict[str, str]] = []
        equity = valuation.equity
        for asset in sorted(set(weights) | set(held)):
            if asset == currency or equity <= 0:
                continue
            target = weights.get(asset, ZERO)
            planned = await self._plan_asset(
                account, asset, currency, target, held.get(asset), equity, tolerance
            )
            if isinstance(planned, dict):
                skipped.append(planned)
            elif planned is not None:
                trades.append(planned)
        trades.sort(key=lambda t: 0 if t.side is OrderSide.SELL else 1)
        return valuation, trades, skipped

    async def _plan_asset(
        self,
        account: TradingAccount,
        asset: str,
        currency: str,
        target: Decimal,
        held: tuple[AssetBalance, Decimal | None] | None,
        equity: Decimal,
        tolerance: Decimal,
    ) -> PlannedTrade | dict[str, str] | None:
        symbol = f"{asset}/{currency}"
        try:
            instrument = await self.orders.instrument(account, symbol)
        except CryptoOrchestratorError:
            return {"asset": asset, "reason": f"{symbol} is not traded on {account.exchange}"}
        price = await self.price(account, asset, currency)
        if price is None:
            return {"asset": asset, "reason": f"no price for {symbol}"}
        current_value = ZERO if held is None or held[1] is None else held[1]
        current = current_value / equity
        if abs(target - current) < tolerance:
            return None
        side = OrderSide.BUY if target > current else OrderSide.SELL
        quantity = instrument.round_quantity(abs(target * equity - current_value) / price)
        if side is OrderSide.SELL and held is not None:
            quantity = min(quantity, instrument.round_quantity(held[0].free))
        if quantity <= 0 or quantity * price < instrument.min_notional or quantity < instrument.min_quantity:
            return {"asset": asset, "reason": "the difference is below the market's minimum order"}
        return PlannedTrade(instrument.symbol, asset, side, quantity, price, current, target)

    async def rebalance(
        self, user_id: int, planned: list[PlannedTrade], *, account_id: str
    ) -> tuple[list[Order], list[dict[str, str]]]:
        orders: list[Order] = []
        skipped: list[dict[str, str]] = []
        for trade in planned:
            try:
                orders.append(
                    await self.orders.place(
                        user_id,
                        OrderRequest(
                            symbol=trade.symbol,
                            side=trade.side,
                            quantity=trade.quantity,
                            account_id=account_id,
                        ),
                    )
                )
            except CryptoOrchestratorError as error:
                skipped.append({"asset": trade.asset, "reason": error.message})
        return orders, skipped

    # --- paper account reset ---------------------------------------------------------------

    async def reset_paper(self, user_id: int, balances: dict[str, Decimal] | None) -> TradingAccount:
        """Cancel every open order, flatten every position and set the balances to the starting
        ones (or ``balances``, which then become the new starting balances), all as entries."""
        account = await self.orders.accounts.paper_account(user_id)
        async with self._uow() as uow:
            open_orders = await uow.orders.open_orders(account_id=account.id)
        for order in open_orders:
            await self.orders.cancel(user_id, order.id)
        starting = balances if balances is not None else self.orders.accounts.starting_balances_of(account)
        now = self._clock.now()
        async with self.orders.account_lock(account.id), self._uow() as uow:
            ledger = Ledger(account.id, await uow.ledger.balances_for_update(account.id))
            ledger.reset(starting, timestamp=now, reference="reset")
            await uow.ledger.record(account.id, ledger.take_entries(), ledger.balances(), now=now)
            for position in await uow.positions.list(account.id, open_only=False):
                await uow.positions.save(
                    replace(
                        position,
                        quantity=ZERO,
                        entry_price=None,
                        margin=ZERO,
                        opened_at=None,
                        updated_at=now,
                    )
                )
            settings = {
                **account.settings,
                "starting_balances": {asset: str(amount) for asset, amount in starting.items()},
            }
            account = await uow.accounts.update(account.id, now=now, settings=settings)
            await uow.commit()
        self.orders.accounts.forget(account)
        return account
