"""Paper execution: the simulator's matching engine behind the order service.

One :class:`~cryptoorchestrator.simulator.matching.PaperExchange` serves every paper account of
the process (it keys resting orders by order id). Prices come from two places:

* what is *fed* in: closed candles and quotes pushed by the market-data poller, a running bot or
  a test replaying candles (:meth:`PaperExecution.feed`); resting orders match against them;
* what is *pulled* when an order arrives and nothing fresh was fed: the market-data service's
  ticker (live from the exchange when ``CO_MARKET_DATA_LIVE`` is on, else the replayed store),
  with its order book when it is live (market orders then walk real depth).

A fed price is fresh for ``fresh_seconds`` of clock time; a pulled one is cached for one second,
so a burst of orders does not re-read the store for each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import NotFound
from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.market import OrderBook, Ticker
from cryptoorchestrator.domain.orders import Canceled, Order, OrderSide, OrderStatus
from cryptoorchestrator.services.execution import OrderEvents
from cryptoorchestrator.simulator.fill_model import FillRules
from cryptoorchestrator.simulator.matching import Bar, MarketState, PaperExchange

TickerSource = Callable[[str, str], Awaitable[Ticker]]
BookSource = Callable[[str, str], Awaitable[OrderBook | None]]

_PULL_CACHE_SECONDS = 1.0


class PaperExecution:
    """The paper venues of the process: one matching engine per exchange whose prices it uses,
    shared by every paper account on that exchange. :meth:`client` gives the
    ``ExecutionClient`` of one exchange."""

    def __init__(
        self,
        *,
        clock: Clock,
        ticker: TickerSource,
        book: BookSource | None = None,
        rules: FillRules | None = None,
        fresh_seconds: float = 10.0,
    ) -> None:
        self._clock = clock
        self._ticker = ticker
        self._book = book
        self._rules = rules
        self._fresh_seconds = fresh_seconds
        self._engines: dict[str, PaperExchange] = {}
        self._fed: dict[tuple[str, str], tuple[float, MarketState]] = {}
        self._pulled: dict[tuple[str, str], tuple[float, MarketState]] = {}

    def now(self) -> datetime:
        return self._clock.now()

    def engine(self, exchange: str) -> PaperExchange:
        if exchange not in self._engines:
            self._engines[exchange] = PaperExchange(rules=self._rules)
        return self._engines[exchange]

    def client(self, exchange: str) -> PaperClient:
        return PaperClient(self, exchange)

    # --- prices ---------------------------------------------------------------------------

    def _remember(self, exchange: str, market: MarketState | Bar) -> None:
        state = (
            market
            if isinstance(market, MarketState)
            else MarketState(
                symbol=market.symbol, last=market.close, timestamp=market.timestamp, bar_volume=market.volume
            )
        )
        self._fed[(exchange, market.symbol)] = (self._clock.timestamp(), state)

    async def quote(self, exchange: str, symbol: str) -> MarketState:
        """The price an order arriving now trades against (module docstring)."""
        now = self._clock.timestamp()
        fed = self._fed.get((exchange, symbol))
        if fed is not None and now - fed[0] <= self._fresh_seconds:
            return fed[1]
        pulled = self._pulled.get((exchange, symbol))
        if pulled is not None and now - pulled[0] <= _PULL_CACHE_SECONDS:
            return pulled[1]
        ticker = await self._ticker(exchange, symbol)
        book = await self._book(exchange, symbol) if self._book is not None else None
        last = ticker.last or ticker.mid or ticker.ask or ticker.bid
        if last is None:
            raise NotFound(f"No price for {symbol} on {exchange}.", details={"symbol": symbol})
        state = MarketState(
            symbol=symbol, last=last, bid=ticker.bid, ask=ticker.ask, book=book, timestamp=self._clock.now()
        )
        self._pulled[(exchange, symbol)] = (now, state)
        return state

    def last_price(self, exchange: str, symbol: str) -> Decimal | None:
        """The latest price seen for ``symbol`` (fed or pulled), without asking anyone."""
        seen = [e for e in (self._fed.get((exchange, symbol)), self._pulled.get((exchange, symbol))) if e]
        if not seen:
            return None
        return max(seen, key=lambda entry: entry[0])[1].last

    def feed(self, exchange: str, market: MarketState | Bar, *, now: datetime | None = None) -> OrderEvents:
        """Match the resting orders of ``exchange`` against a new quote or closed candle, and
        remember the price for the orders that arrive next."""
        self._remember(exchange, market)
        updates = self.engine(exchange).on_market(market, now=now or self._clock.now())
        return [(update.order_id, update.event) for update in updates]

    def restore(
        self, exchange: str, orders: Iterable[Order], *, instruments: Mapping[str, Instrument]
    ) -> None:
        self.engine(exchange).restore(orders, instruments=instruments)

    def resting(self) -> dict[str, set[str]]:
        """Exchange -> symbols with resting paper orders (what the price poller watches)."""
        return {
            name: {order.symbol for order in engine.open_orders()}
            for name, engine in self._engines.items()
            if engine.open_orders()
        }


class PaperClient:
    """``ExecutionClient`` for the paper accounts on one exchange's prices."""

    def __init__(self, host: PaperExecution, exchange: str) -> None:
        self._host = host
        self.exchange = exchange

    @property
    def mode(self) -> str:
        return "paper"

    async def reference_price(self, symbol: str, side: OrderSide) -> Decimal:
        return (await self._host.quote(self.exchange, symbol)).touch(side)

    async def submit(self, order: Order, instrument: Instrument) -> OrderEvents:
        market = await self._host.quote(self.exchange, order.symbol)
        engine = self._host.engine(self.exchange)
        updates = engine.submit(order, instrument=instrument, market=market, now=self._host.now())
        return [(update.order_id, update.event) for update in updates]

    async def cancel(self, order: Order) -> OrderEvents:
        now = self._host.now()
        try:
            updates = self._host.engine(self.exchange).cancel(order.id, now=now)
        except NotFound:
            if order.status in (OrderStatus.PENDING, OrderStatus.UNKNOWN):
                # It never reached the engine (a crash between persisting and sending).
                return [(order.id, Canceled(timestamp=now, reason="canceled before it was sent"))]
            return []
        return [(update.order_id, update.event) for update in updates]

    async def lookup(self, order: Order) -> OrderEvents | None:
        resting = {o.id for o in self._host.engine(self.exchange).open_orders(order.symbol)}
        return [] if order.id in resting else None
