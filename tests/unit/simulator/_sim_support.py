"""Builders for the paper-exchange tests: orders, quotes, bars, books and an order tracker."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.market import OrderBook
from cryptoorchestrator.domain.orders import (
    Accepted,
    Fill,
    Filled,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
    apply_event,
)
from cryptoorchestrator.simulator.fill_model import FillRules
from cryptoorchestrator.simulator.market_state import Bar, MarketState
from cryptoorchestrator.simulator.matching import OrderUpdate, PaperExchange

SYMBOL = "BTC/USDT"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
BTC = Instrument(
    symbol=SYMBOL,
    base="BTC",
    quote="USDT",
    price_tick=Decimal("0.01"),
    quantity_step=Decimal("0.001"),
    maker_fee=Decimal("0.001"),
    taker_fee=Decimal("0.002"),
)
NO_SLIPPAGE = FillRules(slippage_bps=Decimal(0))

_order_numbers = itertools.count(1)


def D(value: str | int | float) -> Decimal:
    return Decimal(str(value))


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def exchange(rules: FillRules = NO_SLIPPAGE) -> PaperExchange:
    return PaperExchange(rules=rules, id_prefix="paper")


def order(
    side: str = "buy",
    type_: str = "market",
    quantity: str = "1",
    *,
    price: str | None = None,
    stop: str | None = None,
    tif: str = "GTC",
    oco: str | None = None,
    order_id: str | None = None,
    symbol: str = SYMBOL,
) -> Order:
    oid = order_id or f"o{next(_order_numbers)}"
    return Order(
        id=oid,
        user_id=1,
        account_id="acc-1",
        symbol=symbol,
        side=OrderSide(side),
        type=OrderType(type_),
        quantity=D(quantity),
        client_order_id=f"c-{oid}",
        created_at=T0,
        updated_at=T0,
        price=None if price is None else D(price),
        stop_price=None if stop is None else D(stop),
        time_in_force=TimeInForce(tif),
        oco_group=oco,
    )


def quote(
    last: str,
    *,
    bid: str | None = None,
    ask: str | None = None,
    book: OrderBook | None = None,
    volume: str | None = None,
    symbol: str = SYMBOL,
) -> MarketState:
    return MarketState(
        symbol=symbol,
        last=D(last),
        timestamp=T0,
        bid=None if bid is None else D(bid),
        ask=None if ask is None else D(ask),
        book=book,
        bar_volume=None if volume is None else D(volume),
    )


def bar(o: str, h: str, lo: str, c: str, volume: str = "1000", symbol: str = SYMBOL) -> Bar:
    return Bar(symbol=symbol, open=D(o), high=D(h), low=D(lo), close=D(c), volume=D(volume), timestamp=T0)


def book(bids: list[tuple[str, str]] | None = None, asks: list[tuple[str, str]] | None = None) -> OrderBook:
    return OrderBook(
        symbol=SYMBOL,
        timestamp=None,
        bids=tuple((D(p), D(s)) for p, s in bids or []),
        asks=tuple((D(p), D(s)) for p, s in asks or []),
        source="test",
    )


class Tracker:
    """The caller's side: applies every update to its copy of the orders, strictly.

    Strict means every event must change an open order the way the engine meant it: no event for
    a terminal order (rule 1 would hide it), no fill beyond the remaining quantity (rule 3 would
    truncate it), no duplicate trade id, ``Accepted`` only for a pending order."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.trade_ids: set[str] = set()
        self.fills: list[Fill] = []

    def track(self, order_: Order) -> Order:
        self.orders[order_.id] = order_
        return order_

    def apply(self, updates: list[OrderUpdate]) -> list[OrderUpdate]:
        for order_id, event in updates:
            current = self.orders[order_id]
            assert not current.is_terminal, (current, event)
            if isinstance(event, Accepted):
                assert current.status is OrderStatus.PENDING
            if isinstance(event, Filled):
                fill = event.fill
                assert fill.order_id == order_id
                assert fill.trade_id not in self.trade_ids
                assert 0 < fill.quantity <= current.remaining
                self.trade_ids.add(fill.trade_id)
                self.fills.append(fill)
            after = apply_event(current, event)
            if isinstance(event, Filled):
                assert after.filled_quantity == current.filled_quantity + event.fill.quantity
            self.orders[order_id] = after
        return updates

    def submit(self, engine: PaperExchange, order_: Order, market: MarketState, now: datetime = T0) -> Order:
        self.track(order_)
        self.apply(engine.submit(order_, instrument=BTC, market=market, now=now))
        return self.orders[order_.id]

    def __getitem__(self, order_id: str) -> Order:
        return self.orders[order_id]

    def fills_of(self, order_id: str) -> list[Fill]:
        return [f for f in self.fills if f.order_id == order_id]


def fills(updates: list[OrderUpdate]) -> list[Filled]:
    return [event for _, event in updates if isinstance(event, Filled)]


def kinds(updates: list[OrderUpdate]) -> list[str]:
    return [type(event).__name__ for _, event in updates]
