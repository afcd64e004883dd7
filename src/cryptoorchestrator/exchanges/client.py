"""The exchange port (``ExchangeClient``) and its ccxt adapter (``CcxtExchangeClient``).

One adapter for every venue ccxt supports, over ``ccxt.async_support``. Every call:

1. draws from the shared rate budget of its (exchange, credential) pair (``ratelimit.py``);
   ccxt's own throttler is switched off because the shared budget replaces it;
2. translates any ccxt exception into the core error tree (``errors.py``);
3. is retried only when that is safe (``ratelimit.retry_async``): reads retry transient
   errors and timeouts; state-changing calls (create and cancel) never repeat a request whose
   outcome is unknown; ``fetch_order_by_client_id`` resolves such an outcome instead.

Results are the Decimal records of ``domain/market.py``; candles stay floats (kernel input).
Nothing here knows about paper trading or backtests: those swap the client, not a flag.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from types import TracebackType
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

import ccxt
import ccxt.async_support as ccxt_async

from cryptoorchestrator.core.errors import (
    CryptoOrchestratorError,
    ExchangeNotSupported,
    ExchangeRateLimited,
    OrderNotFoundOnExchange,
    ValidationFailed,
)
from cryptoorchestrator.domain.market import (
    Balance,
    ExchangeOrder,
    ExchangeTrade,
    MarketInfo,
    OrderBook,
    OrderSide,
    Ticker,
)
from cryptoorchestrator.exchanges import mapping
from cryptoorchestrator.exchanges.errors import install_response_guard, translate_ccxt_error
from cryptoorchestrator.exchanges.ratelimit import (
    MonotonicClock,
    RateBudget,
    RateBudgetRegistry,
    RetryPolicy,
    SleepFunction,
    credential_fingerprint,
    default_registry,
    requests_per_second_from_ccxt,
    retry_async,
)
from cryptoorchestrator.exchanges.symbols import SymbolIndex

T = TypeVar("T")
logger = logging.getLogger(__name__)

#: Budget weight per operation, in ccxt cost units (one unit = one ``rateLimit`` interval).
#: Rough Binance-like proportions: market metadata and account snapshots are heavy.
DEFAULT_WEIGHTS: Final[Mapping[str, float]] = {
    "load_markets": 10.0,
    "fetch_balance": 5.0,
    "fetch_open_orders_all": 10.0,
    "fetch_my_trades": 5.0,
    "fetch_order_book": 2.0,
}
DEFAULT_MARKETS_TTL_SECONDS: Final = 3600.0


@runtime_checkable
class ExchangeClient(Protocol):
    """What the market-data and order services need from a venue."""

    @property
    def exchange_id(self) -> str: ...

    async def load_markets(self, reload: bool = False) -> Mapping[str, MarketInfo]: ...

    async def markets(self) -> Mapping[str, MarketInfo]: ...

    async def resolve_symbol(self, text: str) -> str: ...

    async def fetch_ticker(self, symbol: str) -> Ticker: ...

    async def fetch_order_book(self, symbol: str, limit: int | None = None) -> OrderBook: ...

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str = "1m", since_ms: int | None = None, limit: int | None = None
    ) -> list[list[float]]: ...

    async def fetch_balance(self) -> dict[str, Balance]: ...

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

    async def fetch_order(self, order_id: str, symbol: str) -> ExchangeOrder: ...

    async def fetch_order_by_client_id(self, client_order_id: str, symbol: str) -> ExchangeOrder | None: ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]: ...

    async def fetch_my_trades(
        self, symbol: str, since_ms: int | None = None, limit: int | None = None
    ) -> list[ExchangeTrade]: ...

    async def has_withdraw_permission(self) -> bool | None: ...

    async def close(self) -> None: ...


class CcxtExchangeClient:
    """``ExchangeClient`` over a ccxt async exchange instance.

    Build it with :meth:`create` from an exchange id and credentials, or pass an instance
    already built (tests inject ``testing.fake_exchange.FakeBinance`` this way). The client
    owns the instance and closes it in :meth:`close` unless ``owns_exchange=False``.
    """

    def __init__(
        self,
        exchange: Any,
        *,
        budget_registry: RateBudgetRegistry | None = None,
        budget: RateBudget | None = None,
        requests_per_second: float | None = None,
        retry_policy: RetryPolicy | None = None,
        markets_ttl_seconds: float = DEFAULT_MARKETS_TTL_SECONDS,
        clock: MonotonicClock | None = None,
        sleep: SleepFunction | None = None,
        weights: Mapping[str, float] | None = None,
        rng: random.Random | None = None,
        owns_exchange: bool = True,
    ) -> None:
        self._exchange = exchange
        # Our shared budget throttles; ccxt's per-instance throttler would only double-count.
        exchange.enableRateLimit = False
        exchange.enableLastResponseHeaders = True
        # Binance refuses fetchOpenOrders without a symbol unless told the heavier weight is
        # known; the budget charges that weight ("fetch_open_orders_all").
        exchange.options["warnOnFetchOpenOrdersWithoutSymbol"] = False
        install_response_guard(exchange)
        # ``is None``, not ``or``: an empty registry has len() 0 and would read as false.
        registry = budget_registry if budget_registry is not None else default_registry()
        self._budget = (
            budget
            if budget is not None
            else registry.get(
                exchange.id,
                credential_fingerprint(getattr(exchange, "apiKey", None)),
                requests_per_second=requests_per_second or requests_per_second_from_ccxt(exchange.rateLimit),
            )
        )
        self._retry = retry_policy or RetryPolicy()
        self._markets_ttl = markets_ttl_seconds
        self._clock: MonotonicClock = clock or registry.clock
        self._sleep: SleepFunction = sleep or registry.sleep
        self._weights = {**DEFAULT_WEIGHTS, **(weights or {})}
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._owns_exchange = owns_exchange
        self._markets: dict[str, MarketInfo] | None = None
        self._symbols = SymbolIndex(())
        self._markets_loaded_at = float("-inf")
        self._markets_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    def create(
        cls,
        exchange_id: str,
        *,
        api_key: str | None = None,
        secret: str | None = None,
        password: str | None = None,
        sandbox: bool = False,
        options: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        **client_options: Any,
    ) -> CcxtExchangeClient:
        """Build the ccxt instance for ``exchange_id`` and wrap it.

        ``options`` become ccxt's ``options`` (venue specifics such as ``defaultType``);
        ``config`` is merged into the constructor arguments; ``client_options`` go to
        ``__init__`` (budget registry, retry policy, clock...).
        """
        exchange_class = (
            getattr(ccxt_async, exchange_id, None) if exchange_id in ccxt_async.exchanges else None
        )
        if exchange_class is None:
            raise ExchangeNotSupported(
                f"ccxt does not support the exchange {exchange_id!r}.", details={"exchange": exchange_id}
            )
        arguments: dict[str, Any] = {"enableRateLimit": False, **(config or {})}
        credentials = {"apiKey": api_key, "secret": secret, "password": password}
        arguments.update({key: value for key, value in credentials.items() if value})
        if options:
            arguments["options"] = dict(options)
        exchange = exchange_class(arguments)
        if sandbox:
            try:
                exchange.set_sandbox_mode(True)
            except ccxt.NotSupported as error:
                raise ExchangeNotSupported(
                    f"{exchange_id} has no sandbox.", details={"exchange": exchange_id}
                ) from error
        return cls(exchange, **client_options)

    # --- plumbing -----------------------------------------------------------------------

    @property
    def exchange_id(self) -> str:
        """ccxt's id of the venue (``"binance"``)."""
        return str(self._exchange.id)

    @property
    def budget(self) -> RateBudget:
        """The shared rate budget this client draws from."""
        return self._budget

    def _secrets(self) -> tuple[str | None, ...]:
        return tuple(getattr(self._exchange, name, None) for name in ("apiKey", "secret", "password", "uid"))

    async def _call(
        self,
        operation: str,
        invoke: Callable[[], Awaitable[T]],
        *,
        idempotent: bool = True,
        weight_key: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> T:
        weight = self._weights.get(weight_key or operation, 1.0)

        async def attempt() -> T:
            await self._budget.acquire(weight)
            try:
                result = await invoke()
            except ccxt.BaseError as vendor_error:
                error = translate_ccxt_error(
                    vendor_error,
                    exchange_id=self.exchange_id,
                    operation=operation,
                    idempotent=idempotent,
                    secrets=self._secrets(),
                    context=context,
                )
                if isinstance(error, ExchangeRateLimited):
                    blocked = self._budget.penalize(
                        retry_after=error.retry_after, banned=error.details.get("http_status") == 418
                    )
                    logger.warning(
                        "exchange throttled us; every caller of this budget waits",
                        extra={
                            "exchange": self.exchange_id,
                            "operation": operation,
                            "blocked_seconds": blocked,
                        },
                    )
                # ``from None``: the vendor text may hold a signed URL; ours is redacted.
                raise error from None
            self._budget.record_success()
            return result

        def log_retry(attempt_number: int, error: CryptoOrchestratorError, delay: float) -> None:
            logger.info(
                "retrying exchange call",
                extra={
                    "exchange": self.exchange_id,
                    "operation": operation,
                    "attempt": attempt_number,
                    "error_code": error.code,
                    "delay_seconds": delay,
                },
            )

        return await retry_async(
            attempt,
            policy=self._retry,
            idempotent=idempotent,
            sleep=self._sleep,
            rng=self._rng,
            on_retry=log_retry,
        )

    # --- markets ------------------------------------------------------------------------

    async def load_markets(self, reload: bool = False) -> Mapping[str, MarketInfo]:
        """The venue's markets by unified symbol, cached for ``markets_ttl_seconds``."""
        cached = None if reload else self._fresh_markets()
        if cached is not None:
            return cached
        async with self._markets_lock:
            # Another task may have loaded them while this one waited for the lock.
            cached = None if reload else self._fresh_markets()
            if cached is not None:
                return cached
            refresh = reload or self._markets is not None
            raw = await self._call("load_markets", lambda: self._exchange.load_markets(refresh))
            precision_mode = int(getattr(self._exchange, "precisionMode", mapping.TICK_SIZE))
            markets = mapping.markets_from_ccxt(raw, precision_mode=precision_mode)
            self._markets = markets
            self._symbols = SymbolIndex(markets)
            self._markets_loaded_at = self._clock.monotonic()
            return markets

    def _fresh_markets(self) -> dict[str, MarketInfo] | None:
        if self._clock.monotonic() - self._markets_loaded_at >= self._markets_ttl:
            return None
        return self._markets

    async def markets(self) -> Mapping[str, MarketInfo]:
        """The cached markets, loading them on first use."""
        return await self.load_markets()

    async def resolve_symbol(self, text: str) -> str:
        """``BTCUSDT``, ``btc-usdt``, ``BTC_USDT``... as the unified symbol (``InvalidSymbol``
        lists the known ones when nothing matches)."""
        await self.load_markets()
        return self._symbols.resolve(text)

    # --- market data --------------------------------------------------------------------

    async def fetch_ticker(self, symbol: str) -> Ticker:
        """The venue's ticker of ``symbol``."""
        unified = await self.resolve_symbol(symbol)
        raw = await self._call(
            "fetch_ticker", lambda: self._exchange.fetch_ticker(unified), context={"symbol": unified}
        )
        return mapping.ticker_from_ccxt(raw, source=self.exchange_id)

    async def fetch_order_book(self, symbol: str, limit: int | None = None) -> OrderBook:
        """A depth snapshot of ``symbol`` (``limit`` levels a side when given)."""
        unified = await self.resolve_symbol(symbol)
        raw = await self._call(
            "fetch_order_book",
            lambda: self._exchange.fetch_order_book(unified, limit),
            context={"symbol": unified},
        )
        return mapping.order_book_from_ccxt(raw, symbol=unified, source=self.exchange_id)

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str = "1m", since_ms: int | None = None, limit: int | None = None
    ) -> list[list[float]]:
        """Candles ``[timestamp_ms, open, high, low, close, volume]``, oldest first."""
        unified = await self.resolve_symbol(symbol)
        raw = await self._call(
            "fetch_ohlcv",
            lambda: self._exchange.fetch_ohlcv(unified, timeframe, since_ms, limit),
            context={"symbol": unified, "timeframe": timeframe},
        )
        return mapping.ohlcv_from_ccxt(raw)

    # --- account ------------------------------------------------------------------------

    async def fetch_balance(self) -> dict[str, Balance]:
        """Free, used and total amount of every asset held (zero balances left out)."""
        raw = await self._call("fetch_balance", lambda: self._exchange.fetch_balance())
        return mapping.balances_from_ccxt(raw)

    async def has_withdraw_permission(self) -> bool | None:
        """Whether the API key may withdraw funds; ``None`` when the venue does not tell.

        Best effort: ccxt has no unified call for key permissions, so only venues with a known
        endpoint (Binance's ``GET /sapi/v1/account/apiRestrictions``) are asked.
        """
        if not getattr(self._exchange, "apiKey", None):
            return None
        endpoint = getattr(self._exchange, "sapiGetAccountApiRestrictions", None)
        if endpoint is None:
            return None
        try:
            raw = await self._call("has_withdraw_permission", lambda: endpoint())
        except ExchangeNotSupported:  # e.g. Binance's testnet has no sapi endpoints
            return None
        value = raw.get("enableWithdrawals") if isinstance(raw, Mapping) else None
        return value if isinstance(value, bool) else None

    # --- orders -------------------------------------------------------------------------

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
    ) -> ExchangeOrder:
        """Submit an order, tagged with ``client_order_id`` so its fate can always be found.

        Never retried after a timeout: an ``ExchangeTimeout`` (``details["outcome_unknown"]``)
        means the order may exist; resolve it with :meth:`fetch_order_by_client_id`.
        """
        if not client_order_id:
            raise ValidationFailed("An order needs a client order id.", details={"field": "client_order_id"})
        if side not in ("buy", "sell"):
            raise ValidationFailed(f"Unknown order side {side!r}.", details={"field": "side"})
        if amount <= 0:
            raise ValidationFailed("The order amount must be positive.", details={"field": "amount"})
        unified = await self.resolve_symbol(symbol)
        # ccxt's unified parameter; its Binance adapter sends it as newClientOrderId.
        request = {**(params or {}), "clientOrderId": client_order_id}
        raw = await self._call(
            "create_order",
            lambda: self._exchange.create_order(
                unified,
                type,
                side,
                float(amount),
                None if price is None else float(price),
                request,
            ),
            idempotent=False,
            context={"symbol": unified, "client_order_id": client_order_id},
        )
        return mapping.order_from_ccxt(raw)

    async def cancel_order(self, order_id: str, symbol: str) -> ExchangeOrder:
        """Cancel an open order. Not retried after a timeout (check with :meth:`fetch_order`)."""
        unified = await self.resolve_symbol(symbol)
        raw = await self._call(
            "cancel_order",
            lambda: self._exchange.cancel_order(order_id, unified),
            idempotent=False,
            context={"symbol": unified, "order_id": order_id},
        )
        return mapping.order_from_ccxt(raw)

    async def fetch_order(self, order_id: str, symbol: str) -> ExchangeOrder:
        """One order by the venue's id (``OrderNotFoundOnExchange`` when unknown)."""
        unified = await self.resolve_symbol(symbol)
        raw = await self._call(
            "fetch_order",
            lambda: self._exchange.fetch_order(order_id, unified),
            context={"symbol": unified, "order_id": order_id},
        )
        return mapping.order_from_ccxt(raw)

    async def fetch_order_by_client_id(self, client_order_id: str, symbol: str) -> ExchangeOrder | None:
        """The order we tagged ``client_order_id``, or ``None`` when the venue has none.

        This is how an unknown submission outcome is resolved: after an ``ExchangeTimeout``
        from :meth:`create_order`, ask here before deciding whether to submit again.
        """
        unified = await self.resolve_symbol(symbol)
        try:
            raw = await self._call(
                "fetch_order_by_client_id",
                lambda: self._exchange.fetch_order("", unified, {"clientOrderId": client_order_id}),
                context={"symbol": unified, "client_order_id": client_order_id},
            )
        except OrderNotFoundOnExchange:
            return None
        return mapping.order_from_ccxt(raw)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        """Open orders of ``symbol``, or of every market (a heavier request) without one."""
        unified = None if symbol is None else await self.resolve_symbol(symbol)
        raw = await self._call(
            "fetch_open_orders",
            lambda: self._exchange.fetch_open_orders(unified),
            weight_key="fetch_open_orders" if unified else "fetch_open_orders_all",
            context={"symbol": unified},
        )
        return [mapping.order_from_ccxt(order) for order in raw]

    async def fetch_my_trades(
        self, symbol: str, since_ms: int | None = None, limit: int | None = None
    ) -> list[ExchangeTrade]:
        """Our fills in ``symbol`` since ``since_ms`` (the venue's default window without it)."""
        unified = await self.resolve_symbol(symbol)
        raw = await self._call(
            "fetch_my_trades",
            lambda: self._exchange.fetch_my_trades(unified, since_ms, limit),
            context={"symbol": unified},
        )
        return [mapping.trade_from_ccxt(trade) for trade in raw]

    # --- lifecycle ----------------------------------------------------------------------

    async def close(self) -> None:
        """Release the ccxt instance's HTTP session (when this client owns it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_exchange:
            await self._exchange.close()

    async def __aenter__(self) -> CcxtExchangeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
