"""An in-memory Binance spot REST API: the venue that ``FakeBinance`` talks to.

It answers the requests ccxt's ``binance`` class builds (paths, parameters, HMAC signatures)
with bodies shaped like Binance's, so ccxt's real ``parse_*`` methods run on them. It keeps
balances, orders and fills, and follows Binance's rules where tests rely on them:

* market orders fill at once at the current price; limit orders rest unless marketable
  (then they fill at once as takers); ``set_price`` fills resting limits that the new price
  crosses, at their limit price, as makers; ``fill_order`` makes partial fills by hand;
* filters: PRICE_FILTER tick, LOT_SIZE step and minimum, NOTIONAL minimum (code -1013);
* a ``newClientOrderId`` already used by an open order is refused with -2010 "Duplicate order
  sent." (Binance's rule; ``client_order_id_scope="all"`` refuses any reuse);
* funds are checked and locked (-2010 "Account has insufficient balance for requested action.");
* signed endpoints check the API key (-2015) and the HMAC-SHA256 signature (-1022).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal, Protocol

from cryptoorchestrator.core.clock import SimClock
from cryptoorchestrator.testing.fake_exchange_data import (
    DEFAULT_BALANCES,
    DEFAULT_MARKETS,
    DEFAULT_START_SECONDS,
    INTERVAL_MS,
    FakeMarket,
    floor_to,
    fmt,
    generate_candles,
    normalise_candles,
)
from cryptoorchestrator.testing.fake_exchange_orders import SpotAccount
from cryptoorchestrator.testing.fake_exchange_records import (
    VenueError,
    VenueOrder,
    VenueRequest,
    VenueResponse,
    VenueTrade,
    int_param,
)

Candle = tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]


class WallClock(Protocol):
    """Seconds since the epoch (``core.clock.SimClock`` and ``LiveClock`` fit)."""

    def timestamp(self) -> float: ...


class SimulatedBinanceSpot:
    """State and request handling of the fake Binance spot venue."""

    def __init__(
        self,
        *,
        markets: Sequence[FakeMarket] = DEFAULT_MARKETS,
        balances: Mapping[str, Decimal | int | str] | None = None,
        clock: WallClock | None = None,
        api_key: str = "fake-binance-api-key-0001",
        secret: str = "fake-binance-secret-0001",  # noqa: S107 - the fake venue's own test secret
        fee_rate: Decimal = Decimal("0.001"),
        withdrawals_enabled: bool = False,
        client_order_id_scope: Literal["open", "all"] = "open",
        candles: Mapping[tuple[str, str], Sequence[Sequence[object]]] | None = None,
        candle_count: int = 1000,
    ) -> None:
        self.clock: WallClock = clock or SimClock(DEFAULT_START_SECONDS)
        self.api_key = api_key
        self.secret = secret
        self.withdrawals_enabled = withdrawals_enabled
        self.candle_count = candle_count
        self._start_ms = self.now_ms()
        self._markets: dict[str, FakeMarket] = {market.exchange_symbol: market for market in markets}
        self._prices: dict[str, Decimal] = {market.exchange_symbol: market.price for market in markets}
        self.account = SpotAccount(
            markets=self._markets,
            balances=DEFAULT_BALANCES if balances is None else balances,
            fee_rate=fee_rate,
            client_order_id_scope=client_order_id_scope,
            now_ms=self.now_ms,
            price_of=lambda symbol: self._prices[symbol],
        )
        self._candles: dict[tuple[str, str], list[Candle]] = {}
        for (symbol, interval), rows in (candles or {}).items():
            self.set_candles(symbol, interval, rows)
        self._price_moves = 0
        self._routes: dict[tuple[str, str], Callable[[Mapping[str, str]], Any]] = {
            ("GET", "/api/v3/ping"): lambda _: {},
            ("GET", "/api/v3/time"): lambda _: {"serverTime": self.now_ms()},
            ("GET", "/api/v3/exchangeInfo"): self._exchange_info,
            ("GET", "/api/v3/ticker/24hr"): self._ticker_24hr,
            ("GET", "/api/v3/ticker/bookTicker"): self._book_ticker,
            ("GET", "/api/v3/ticker/price"): self._ticker_price,
            ("GET", "/api/v3/depth"): self._depth,
            ("GET", "/api/v3/klines"): self._klines,
        }
        self._signed_routes: dict[tuple[str, str], Callable[[Mapping[str, str]], Any]] = {
            ("GET", "/api/v3/account"): self._account,
            ("POST", "/api/v3/order"): self._new_order,
            ("GET", "/api/v3/order"): lambda params: self._find_order(params, code=-2013).to_json(),
            ("DELETE", "/api/v3/order"): self._cancel_order,
            ("GET", "/api/v3/openOrders"): self._open_orders,
            ("GET", "/api/v3/myTrades"): self._my_trades,
            ("GET", "/sapi/v1/account/apiRestrictions"): self._api_restrictions,
        }

    # --- public state API for tests ------------------------------------------------------

    def now_ms(self) -> int:
        """The venue's clock in milliseconds since the epoch."""
        return int(self.clock.timestamp() * 1000)

    def market(self, symbol: str) -> FakeMarket:
        """A market by unified symbol (``BTC/USDT``) or Binance id (``BTCUSDT``)."""
        key = symbol.replace("/", "").upper()
        if key not in self._markets:
            raise KeyError(symbol)
        return self._markets[key]

    def price(self, symbol: str) -> Decimal:
        """The current (last) price of a market."""
        return self._prices[self.market(symbol).exchange_symbol]

    def set_price(self, symbol: str, price: Decimal | int | str) -> list[VenueTrade]:
        """Move the market; resting limit orders the new price crosses fill at their limit."""
        market = self.market(symbol)
        new_price = Decimal(str(price))
        self._prices[market.exchange_symbol] = new_price
        self._price_moves += 1
        return self.account.match(market.exchange_symbol, new_price)

    def fill_order(self, order_id: int, amount: Decimal | None = None) -> VenueTrade:
        """Fill ``amount`` (all that remains by default) of an open order at its limit price."""
        order = self.account.orders[order_id]
        if not order.is_open:
            raise ValueError(f"order {order_id} is {order.status}")
        quantity = order.remaining if amount is None else min(Decimal(amount), order.remaining)
        return self.account.execute(order, quantity, order.price, maker=True)

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        """``(free, locked)`` of an asset."""
        free, locked = self.account.funds(asset)
        return free, locked

    def set_balance(self, asset: str, free: Decimal | int | str, locked: Decimal | int | str = 0) -> None:
        self.account.balances[asset] = [Decimal(str(free)), Decimal(str(locked))]

    def orders(self, symbol: str | None = None) -> list[VenueOrder]:
        """Every order the venue holds (optionally of one market), oldest first."""
        wanted = None if symbol is None else self.market(symbol).exchange_symbol
        return [order for order in self.account.orders.values() if wanted is None or order.symbol == wanted]

    def orders_with_client_id(self, client_order_id: str) -> list[VenueOrder]:
        """Every order tagged ``client_order_id`` (Binance allows reuse once one is closed)."""
        return [order for order in self.account.orders.values() if order.client_order_id == client_order_id]

    def trades(self, symbol: str | None = None) -> list[VenueTrade]:
        """Every fill (optionally of one market), oldest first."""
        wanted = None if symbol is None else self.market(symbol).exchange_symbol
        return [trade for trade in self.account.trades if wanted is None or trade.symbol == wanted]

    def set_candles(self, symbol: str, interval: str, rows: Sequence[Sequence[object]]) -> None:
        """Serve these ``[open_time_ms, open, high, low, close, volume]`` rows as klines."""
        if interval not in INTERVAL_MS:
            raise ValueError(f"unknown interval {interval!r}")
        self._candles[(self.market(symbol).exchange_symbol, interval)] = normalise_candles(rows)

    def candles(self, symbol: str, interval: str) -> list[Candle]:
        """The series served for a market and interval (generated on first use)."""
        market = self.market(symbol)
        key = (market.exchange_symbol, interval)
        if key not in self._candles:
            self._candles[key] = generate_candles(
                market, interval=interval, end_ms=self._start_ms, count=self.candle_count
            )
        return self._candles[key]

    # --- request handling ---------------------------------------------------------------

    def handle(self, request: VenueRequest) -> VenueResponse:
        """Answer one request the way Binance's REST API would."""
        key = (request.method.upper(), request.path)
        try:
            if key in self._signed_routes:
                self._authenticate(request)
                body = self._signed_routes[key](request.params)
            elif key in self._routes:
                body = self._routes[key](request.params)
            else:
                raise VenueError(-1, f"fake exchange: no route for {key[0]} {key[1]}", status=404)
        except VenueError as error:
            return VenueResponse(error.status, {"code": error.code, "msg": error.message})
        return VenueResponse(200, body)

    def _authenticate(self, request: VenueRequest) -> None:
        if not request.api_key or not hmac.compare_digest(request.api_key, self.api_key):
            raise VenueError(-2015, "Invalid API-key, IP, or permissions for action.", status=401)
        if "timestamp" not in request.params:
            raise VenueError(
                -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            )
        expected = hmac.new(
            self.secret.encode(), (request.signed_payload or "").encode(), hashlib.sha256
        ).hexdigest()
        if request.signature is None or not hmac.compare_digest(expected, request.signature):
            raise VenueError(-1022, "Signature for this request is not valid.")

    def _market_param(self, params: Mapping[str, str]) -> FakeMarket:
        symbol = params.get("symbol")
        if not symbol:
            raise VenueError(
                -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        market = self._markets.get(symbol)
        if market is None:
            raise VenueError(-1121, "Invalid symbol.")
        return market

    def _selected_markets(self, params: Mapping[str, str]) -> list[FakeMarket]:
        if params.get("symbol"):
            return [self._market_param(params)]
        if params.get("symbols"):
            names = json.loads(params["symbols"])
            return [self._market_param({"symbol": name}) for name in names]
        return list(self._markets.values())

    # --- market data ----------------------------------------------------------------------

    def _exchange_info(self, params: Mapping[str, str]) -> dict[str, Any]:
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            ],
            "exchangeFilters": [],
            "symbols": [self._symbol_info(market) for market in self._selected_markets(params)],
        }

    @staticmethod
    def _symbol_info(market: FakeMarket) -> dict[str, Any]:
        notional: dict[str, Any] = {"filterType": market.notional_filter, "avgPriceMins": 5}
        if market.notional_filter == "NOTIONAL":
            notional.update(
                minNotional=fmt(market.min_notional),
                applyMinToMarket=True,
                maxNotional="9000000.00000000",
                applyMaxToMarket=False,
            )
        else:
            notional.update(minNotional=fmt(market.min_notional), applyToMarket=True)
        return {
            "symbol": market.exchange_symbol,
            "status": market.status,
            "baseAsset": market.base,
            "baseAssetPrecision": 8,
            "quoteAsset": market.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": list(market.order_types),
            "icebergAllowed": True,
            "ocoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": fmt(market.min_price or market.tick_size),
                    "maxPrice": fmt(market.max_price),
                    "tickSize": fmt(market.tick_size),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": fmt(market.min_qty),
                    "maxQty": fmt(market.max_qty),
                    "stepSize": fmt(market.step_size),
                },
                notional,
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    def _best_prices(self, market: FakeMarket) -> tuple[Decimal, Decimal]:
        price = self._prices[market.exchange_symbol]
        return price - market.tick_size, price + market.tick_size

    def _level_quantity(self, market: FakeMarket, index: int) -> Decimal:
        price = self._prices[market.exchange_symbol]
        raw = Decimal(index + 1) * 10 * market.min_notional / price
        return max(market.step_size, floor_to(raw, market.step_size))

    def _ticker_24hr(self, params: Mapping[str, str]) -> Any:
        tickers = [self._ticker_for(market) for market in self._selected_markets(params)]
        return tickers[0] if params.get("symbol") else tickers

    def _ticker_for(self, market: FakeMarket) -> dict[str, Any]:
        price = self._prices[market.exchange_symbol]
        day = self.candles(market.exchange_symbol, "1h")[-24:]
        open_price = day[0][1] if day else price
        high = max([row[2] for row in day] + [price])
        low = min([row[3] for row in day] + [price])
        volume = sum((row[5] for row in day), Decimal(0))
        quote_volume = sum((row[5] * row[4] for row in day), Decimal(0))
        bid, ask = self._best_prices(market)
        now = self.now_ms()
        return {
            "symbol": market.exchange_symbol,
            "priceChange": fmt(price - open_price),
            "priceChangePercent": f"{(price - open_price) / open_price * 100:.3f}",
            "weightedAvgPrice": fmt(quote_volume / volume if volume else price),
            "prevClosePrice": fmt(open_price),
            "lastPrice": fmt(price),
            "lastQty": fmt(market.min_qty),
            "bidPrice": fmt(bid),
            "bidQty": fmt(self._level_quantity(market, 0)),
            "askPrice": fmt(ask),
            "askQty": fmt(self._level_quantity(market, 0)),
            "openPrice": fmt(open_price),
            "highPrice": fmt(high),
            "lowPrice": fmt(low),
            "volume": fmt(volume),
            "quoteVolume": fmt(quote_volume),
            "openTime": now - 86_400_000,
            "closeTime": now,
            "firstId": 1,
            "lastId": 1000,
            "count": 1000,
        }

    def _book_ticker(self, params: Mapping[str, str]) -> Any:
        rows = []
        for market in self._selected_markets(params):
            bid, ask = self._best_prices(market)
            quantity = fmt(self._level_quantity(market, 0))
            rows.append(
                {
                    "symbol": market.exchange_symbol,
                    "bidPrice": fmt(bid),
                    "bidQty": quantity,
                    "askPrice": fmt(ask),
                    "askQty": quantity,
                }
            )
        return rows[0] if params.get("symbol") else rows

    def _ticker_price(self, params: Mapping[str, str]) -> Any:
        rows = [
            {"symbol": market.exchange_symbol, "price": fmt(self._prices[market.exchange_symbol])}
            for market in self._selected_markets(params)
        ]
        return rows[0] if params.get("symbol") else rows

    def _depth(self, params: Mapping[str, str]) -> dict[str, Any]:
        market = self._market_param(params)
        limit = min(int_param(params, "limit") or 100, 5000)
        best_bid, best_ask = self._best_prices(market)
        price = self._prices[market.exchange_symbol]
        # Levels a few basis points apart, on the tick grid.
        spacing = max(market.tick_size, floor_to(price * Decimal("0.00005"), market.tick_size))
        bids, asks = [], []
        for index in range(limit):
            quantity = fmt(self._level_quantity(market, index))
            bid = best_bid - spacing * index
            if bid > 0:
                bids.append([fmt(bid), quantity])
            asks.append([fmt(best_ask + spacing * index), quantity])
        return {"lastUpdateId": 1 + self._price_moves + self.account.version, "bids": bids, "asks": asks}

    def _klines(self, params: Mapping[str, str]) -> list[list[Any]]:
        market = self._market_param(params)
        interval = params.get("interval", "")
        if interval not in INTERVAL_MS:
            raise VenueError(-1120, "Invalid interval.")
        start = int_param(params, "startTime")
        end = int_param(params, "endTime")
        limit = min(int_param(params, "limit") or 500, 1000)
        rows = [
            row
            for row in self.candles(market.exchange_symbol, interval)
            if (start is None or row[0] >= start) and (end is None or row[0] <= end)
        ]
        # Binance answers the oldest rows from startTime, else the most recent ones.
        rows = rows[:limit] if start is not None else rows[-limit:]
        step = INTERVAL_MS[interval]
        return [
            [
                ts,
                fmt(o),
                fmt(h),
                fmt(lo),
                fmt(c),
                fmt(v),
                ts + step - 1,
                fmt(v * c),
                100,
                fmt(v / 2),
                fmt(v * c / 2),
                "0",
            ]
            for ts, o, h, lo, c, v in rows
        ]

    # --- account and orders ---------------------------------------------------------------

    def _account(self, _: Mapping[str, str]) -> dict[str, Any]:
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": fmt(self.account.fee_rate),
                "taker": fmt(self.account.fee_rate),
                "buyer": "0",
                "seller": "0",
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.now_ms(),
            "accountType": "SPOT",
            "balances": [
                {"asset": asset, "free": fmt(free), "locked": fmt(locked)}
                for asset, (free, locked) in sorted(self.account.balances.items())
            ],
            "permissions": ["SPOT"],
            "uid": 354937868,
        }

    def _api_restrictions(self, _: Mapping[str, str]) -> dict[str, Any]:
        return {
            "ipRestrict": False,
            "createTime": self._start_ms,
            "enableReading": True,
            "enableSpotAndMarginTrading": True,
            "enableWithdrawals": self.withdrawals_enabled,
            "enableInternalTransfer": False,
            "enableMargin": False,
            "enableFutures": False,
            "permitsUniversalTransfer": False,
            "enableVanillaOptions": False,
            "enablePortfolioMarginTrading": False,
        }

    def _new_order(self, params: Mapping[str, str]) -> dict[str, Any]:
        return self.account.place(self._market_param(params), params)

    def _cancel_order(self, params: Mapping[str, str]) -> dict[str, Any]:
        return self.account.cancel(self._find_order(params, code=-2011), params)

    def _find_order(self, params: Mapping[str, str], *, code: int) -> VenueOrder:
        market = self._market_param(params)
        order_id = int_param(params, "orderId")
        client_id = params.get("origClientOrderId")
        if order_id is None and not client_id:
            raise VenueError(
                -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        message = "Unknown order sent." if code == -2011 else "Order does not exist."
        if order_id is not None:
            order = self.account.orders.get(order_id)
            if order is None or order.symbol != market.exchange_symbol:
                raise VenueError(code, message)
            return order
        matches = [
            order
            for order in self.account.orders.values()
            if order.client_order_id == client_id and order.symbol == market.exchange_symbol
        ]
        if not matches:
            raise VenueError(code, message)
        return matches[-1]

    def _open_orders(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        wanted = self._market_param(params).exchange_symbol if params.get("symbol") else None
        return [
            order.to_json()
            for order in self.account.orders.values()
            if order.is_open and (wanted is None or order.symbol == wanted)
        ]

    def _my_trades(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        market = self._market_param(params)
        start, end = int_param(params, "startTime"), int_param(params, "endTime")
        from_id, order_id = int_param(params, "fromId"), int_param(params, "orderId")
        limit = min(int_param(params, "limit") or 500, 1000)
        rows = [
            trade
            for trade in self.account.trades
            if trade.symbol == market.exchange_symbol
            and (start is None or trade.time >= start)
            and (end is None or trade.time <= end)
            and (from_id is None or trade.trade_id >= from_id)
            and (order_id is None or trade.order_id == order_id)
        ]
        rows = rows[:limit] if (start is not None or from_id is not None) else rows[-limit:]
        return [trade.to_json() for trade in rows]
