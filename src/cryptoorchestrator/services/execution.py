"""Execution clients: where an order goes once the order service has validated and persisted it.

Paper and live trading differ only here (the architecture's "one trading core"): both turn a
venue's answers into the same :mod:`domain.orders` events, which the order service applies with
the same state machine, ledger and positions code.

* :class:`LiveExecution` talks to an exchange through the ccxt adapter (a :class:`TradingVenue`).
  A submission that times out or meets a 5xx is reported as :class:`OutcomeUnknown`; the order
  is then looked up by its ``client_order_id`` (:meth:`LiveExecution.lookup`), never resent
  under a new id and never reported as rejected on a guess.
* ``PaperExecution`` (``services/paper.py``) wraps the simulator's matching engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import (
    CryptoOrchestratorError,
    ExchangeRateLimited,
    ExchangeUnavailable,
    InsufficientBalance,
    OrderRejected,
)
from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.market import (
    Balance,
    ExchangeOrder,
    ExchangeTrade,
    MarketInfo,
    OrderSide,
    Ticker,
)
from cryptoorchestrator.domain.orders import (
    Accepted,
    Canceled,
    Expired,
    Fill,
    Filled,
    Liquidity,
    Order,
    OrderEvent,
    OrderType,
    OutcomeUnknown,
    Rejected,
)
from cryptoorchestrator.domain.orders import (
    OrderSide as Side,
)

#: Events for one or several orders: ``(order_id, event)`` in the order they happened.
OrderEvents = list[tuple[str, OrderEvent]]


class ExecutionClient(Protocol):
    """What the order service needs from a venue, paper or live."""

    @property
    def mode(self) -> str: ...

    async def reference_price(self, symbol: str, side: Side) -> Decimal:
        """The price a market order of ``side`` would trade at now (the touch)."""
        ...

    async def submit(self, order: Order, instrument: Instrument) -> OrderEvents: ...

    async def cancel(self, order: Order) -> OrderEvents: ...

    async def lookup(self, order: Order) -> OrderEvents | None:
        """What the venue knows of ``order`` now; ``None`` when it has never seen it."""
        ...


class TradingVenue(Protocol):
    """The part of ``exchanges.CcxtExchangeClient`` that trading uses (services never import
    the adapter itself; ``bootstrap`` hands one in)."""

    @property
    def exchange_id(self) -> str: ...

    async def markets(self) -> Mapping[str, MarketInfo]: ...

    async def resolve_symbol(self, text: str) -> str: ...

    async def fetch_balance(self) -> dict[str, Balance]: ...

    async def fetch_ticker(self, symbol: str) -> Ticker: ...

    async def create_order(
        self,
        symbol: str,
        side: OrderSide,
        type: str,
        amount: Decimal,
        price: Decimal | None = None,
        *,
        client_order_id: str,
        params: Mapping[str, Any] | None = None,
    ) -> ExchangeOrder: ...

    async def cancel_order(self, order_id: str, symbol: str) -> ExchangeOrder: ...

    async def fetch_order_by_client_id(self, client_order_id: str, symbol: str) -> ExchangeOrder | None: ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]: ...

    async def fetch_my_trades(
        self, symbol: str, since_ms: int | None = None, limit: int | None = None
    ) -> list[ExchangeTrade]: ...

    async def has_withdraw_permission(self) -> bool | None: ...

    async def close(self) -> None: ...


def _ms_to_dt(ms: int | None, fallback: datetime) -> datetime:
    return fallback if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


class LiveExecution:
    """Orders on a real exchange through the ccxt adapter."""

    #: How far before an order's creation its fills are searched for.
    TRADE_LOOKBACK = timedelta(minutes=5)

    def __init__(self, venue: TradingVenue, *, clock: Clock) -> None:
        self.venue = venue
        self._clock = clock

    @property
    def mode(self) -> str:
        return "live"

    async def market(self, symbol: str) -> MarketInfo:
        """The venue's rules for ``symbol`` (any accepted spelling); ``InvalidSymbol`` when unknown."""
        unified = await self.venue.resolve_symbol(symbol)
        return (await self.venue.markets())[unified]

    async def balances(self) -> dict[str, Balance]:
        return await self.venue.fetch_balance()

    async def reference_price(self, symbol: str, side: Side) -> Decimal:
        ticker = await self.venue.fetch_ticker(symbol)
        price = (ticker.ask if side is Side.BUY else ticker.bid) or ticker.last
        if price is None:
            raise ExchangeUnavailable(f"The exchange gave no price for {symbol}.", details={"symbol": symbol})
        return price

    def _params(self, order: Order) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if order.type is not OrderType.MARKET:
            params["timeInForce"] = order.time_in_force.value
        if order.stop_price is not None:
            params["stopPrice"] = str(order.stop_price)
        if order.reduce_only:
            params["reduceOnly"] = True
        return params

    async def submit(self, order: Order, instrument: Instrument) -> OrderEvents:
        # Stops are ccxt's unified trigger orders: a market or limit order with ``stopPrice``
        # (``_params``); ccxt picks the venue's own type (on Binance spot STOP_LOSS or
        # STOP_LOSS_LIMIT, which trigger above the price for a buy and below it for a sell; on
        # its futures STOP_MARKET or STOP), and refuses one the market does not offer.
        ccxt_type = "limit" if order.type.has_limit_price else "market"
        now = self._clock.now()
        try:
            answer = await self.venue.create_order(
                order.symbol,
                order.side.value,  # type: ignore[arg-type]
                ccxt_type,
                order.quantity,
                order.price,
                client_order_id=order.client_order_id,
                params=self._params(order),
            )
        except (ExchangeUnavailable, ExchangeRateLimited) as error:
            # A timeout, a dropped answer or a 5xx: the order may exist. Rate limiting is
            # treated the same way (a 429 can come from a proxy after the order went through).
            return [(order.id, OutcomeUnknown(timestamp=now, reason=f"{error.code}: {error.message}"))]
        except CryptoOrchestratorError as error:
            # The venue answered with a refusal (4xx-like: rejected, not enough funds, bad
            # order): rejected. Anything server-side is not a refusal: look the order up.
            if isinstance(error, OrderRejected | InsufficientBalance) or error.http_status < 500:
                return [(order.id, Rejected(timestamp=now, reason=f"{error.code}: {error.message}"))]
            return [(order.id, OutcomeUnknown(timestamp=now, reason=f"{error.code}: {error.message}"))]
        return await self._events_for(order, answer)

    async def cancel(self, order: Order) -> OrderEvents:
        now = self._clock.now()
        if order.exchange_order_id is None:
            found = await self.lookup(order)
            if found is None:
                return [(order.id, Canceled(timestamp=now, reason="never reached the exchange"))]
            if order.exchange_order_id is None:
                return found
        try:
            answer = await self.venue.cancel_order(order.exchange_order_id or "", order.symbol)
        except ExchangeUnavailable:
            return await self.lookup(order) or []
        return await self._events_for(order, answer)

    async def lookup(self, order: Order) -> OrderEvents | None:
        answer = await self.venue.fetch_order_by_client_id(order.client_order_id, order.symbol)
        if answer is None:
            return None
        return await self._events_for(order, answer)

    async def _events_for(self, order: Order, answer: ExchangeOrder) -> OrderEvents:
        now = self._clock.now()
        stamp = _ms_to_dt(answer.timestamp, now)
        events: OrderEvents = []
        if answer.status == "rejected":
            return [(order.id, Rejected(timestamp=stamp, reason="rejected by the exchange"))]
        events.append((order.id, Accepted(exchange_order_id=answer.id, timestamp=stamp)))
        if answer.filled > 0:
            events.extend((order.id, Filled(fill)) for fill in await self._fills(order, answer))
        if answer.status == "canceled":
            events.append((order.id, Canceled(timestamp=now, reason="canceled at the exchange")))
        elif answer.status == "expired":
            events.append((order.id, Expired(timestamp=now, reason="expired at the exchange")))
        return events

    async def _fills(self, order: Order, answer: ExchangeOrder) -> Sequence[Fill]:
        since = int((order.created_at - self.TRADE_LOOKBACK).timestamp() * 1000)
        trades = await self.venue.fetch_my_trades(order.symbol, since_ms=since)
        return [
            fill_from_trade(order, trade, fallback=self._clock.now())
            for trade in trades
            if trade.order_id == answer.id
        ]


def fill_from_trade(order: Order, trade: ExchangeTrade, *, fallback: datetime) -> Fill:
    """One of our fills as the venue reported it, in the domain's terms."""
    quote = order.symbol.split(":", 1)[0].partition("/")[2]
    return Fill(
        trade_id=trade.id,
        order_id=order.id,
        symbol=order.symbol,
        side=order.side,
        price=trade.price,
        quantity=trade.amount,
        fee=trade.fee_cost or Decimal(0),
        fee_asset=trade.fee_currency or quote,
        liquidity=Liquidity.MAKER if trade.taker_or_maker == "maker" else Liquidity.TAKER,
        timestamp=_ms_to_dt(trade.timestamp, fallback),
    )
