"""Builders shared by the domain tests: instruments, fills and orders with plain defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.orders import Fill, Liquidity, Order, OrderSide, OrderType

T0 = datetime(2024, 1, 1, tzinfo=UTC)

SPOT = Instrument(
    symbol="BTC/USDT",
    base="BTC",
    quote="USDT",
    kind="spot",
    price_tick=Decimal("0.01"),
    quantity_step=Decimal("0.0001"),
)
SWAP = Instrument(
    symbol="BTC/USDT:USDT",
    base="BTC",
    quote="USDT",
    kind="swap",
    settle="USDT",
    price_tick=Decimal("0.1"),
    quantity_step=Decimal("0.001"),
    max_leverage=Decimal(50),
    maintenance_margin_rate=Decimal("0.005"),
)


def D(value: str | int) -> Decimal:
    return Decimal(value)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_fill(
    side: OrderSide | str,
    quantity: Decimal | str,
    price: Decimal | str,
    *,
    fee: Decimal | str = "0",
    fee_asset: str = "USDT",
    trade_id: str = "t1",
    order_id: str = "o1",
    symbol: str = SPOT.symbol,
    seconds: int = 0,
) -> Fill:
    return Fill(
        trade_id=trade_id,
        order_id=order_id,
        symbol=symbol,
        side=OrderSide(side),
        price=Decimal(price),
        quantity=Decimal(quantity),
        fee=Decimal(fee),
        fee_asset=fee_asset,
        liquidity=Liquidity.TAKER,
        timestamp=at(seconds),
    )


def make_order(
    quantity: Decimal | str = "1",
    *,
    side: OrderSide = OrderSide.BUY,
    type: OrderType = OrderType.LIMIT,
) -> Order:
    return Order(
        id="o1",
        user_id=1,
        account_id="acc",
        symbol=SPOT.symbol,
        side=side,
        type=type,
        quantity=Decimal(quantity),
        client_order_id="c1",
        created_at=T0,
        updated_at=T0,
        price=Decimal(100) if type.has_limit_price else None,
        stop_price=Decimal(90) if type.is_stop else None,
    )
