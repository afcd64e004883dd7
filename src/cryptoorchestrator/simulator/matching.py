"""The paper exchange: a matching engine for simulated orders (``Decimal``, no I/O).

:class:`PaperExchange` takes orders and market data and answers with the events that happened
to each order (:class:`OrderUpdate`: an order id and an
:data:`~cryptoorchestrator.domain.orders.OrderEvent` for
:func:`~cryptoorchestrator.domain.orders.apply_event`). It keeps the resting orders of any number
of accounts, keyed by order id and symbol; the service layer persists what it returns and
rebuilds it after a restart with :meth:`PaperExchange.restore`. Prices, slippage and commission
follow :mod:`cryptoorchestrator.simulator.fill_model`, the rules the backtest kernel uses, and
bars are read the way the kernel reads them (its rule R5), so a strategy gets the same fills in
a backtest and in paper trading.

Rules (each cited where it is implemented)
------------------------------------------
M1 *Costs.* Slippage comes from :class:`~cryptoorchestrator.simulator.fill_model.FillRules`
   (fill-model rule 2: basis points against the taker, fixed or square-root impact on the bar
   volume), computed once per execution from the quantity that execution trades; a missing bar
   volume counts as zero (the full impact cap). Commission comes from the instrument (its maker
   and taker rates win over the FillRules' rates: they are the venue's), ``fee = price * quantity
   * rate``, charged in the quote asset (the settle asset of a swap). The instrument's step, tick
   and minimums win over the FillRules' ones too.
M2 *Acceptance.* Only ``pending`` orders are submitted. An order is rejected (one ``Rejected``
   event, no ``Accepted``) when its quantity is not positive or off the step, a needed limit or
   stop price is missing, not positive or off the tick, or it misses the instrument's minimum
   quantity or notional (valued at its limit price, else its stop price, else the touch).
   Otherwise it is ``Accepted`` with the exchange order id ``<prefix>-<n>``; its k-th fill has the
   trade id ``<exchange order id>-<k>``.
M3 *Taking liquidity* (market orders, marketable limits, triggered stops). With an order book
   the order walks the levels best first; each level's quantity is rounded down to the step and
   its price moved by the slippage. Without a book there is unlimited liquidity at the reference
   price: the touch (ask for buys, bid for sells, else last) or, for a triggered stop, the worse
   of the stop price and the touch (the stop price or the gap, kernel R5a/b). A limit order takes
   only levels at or better than its limit and every fill price is capped at the limit: slippage
   never makes a fill worse than the limit. Takers pay the taker rate.
M4 *Time in force.* Market orders are immediate-or-cancel: what the book cannot fill is
   ``Canceled`` (reason :data:`NO_LIQUIDITY_REASON`). The rest of a GTC limit rests as a maker
   order; of an IOC order it is ``Canceled`` (:data:`IOC_REASON`). A FOK order (market or limit)
   that cannot be filled whole at once fills nothing and ends ``Expired`` (:data:`FOK_REASON`),
   the status Binance and ccxt report for a killed FOK order.
M5 *Stops* rest untriggered until the price crosses the stop: a quote's last price (buy stop:
   ``last >= stop``, sell stop: ``last <= stop``), a bar's range (``high >= stop`` /
   ``low <= stop``). They then emit ``Triggered`` and execute as a market or limit order (M3, M4).
   A GTC stop-limit that is not marketable at its trigger rests as a limit order; in a bar it can
   fill in the same bar only when the bar opened through the stop (everything else in that bar
   came after the trigger); triggered inside the bar, the path after the trigger is unknown and
   it rests from the next bar on.
M6 *Resting limit orders* fill in full when the price reaches them, as makers: maker rate, no
   slippage (fill-model rule 3). On a quote when the touch crosses the limit (buy: ``ask <=
   limit``), at the limit price: the market traded through the resting order at its price. On a
   bar when the range reaches it (buy: ``low <= limit``), at the limit, or at the open when the
   bar opened through it (kernel R5d: a better open). Queue position and thin depth are not
   modelled for resting orders (no partial maker fills), and every order sees the whole market:
   orders of different accounts do not compete for one snapshot's depth.
M7 *Order of events in one update* (kernel R5a/b, pessimistic because the path inside a bar is
   unknown). A bar is read in two steps: first what its open already passed (stops, then
   limits), then what its range reaches (stops, then limits, triggered stop-limits before plain
   limits); arrival order breaks ties. A quote is one step: stops, then limits. So when the stop
   loss and the take profit of one OCO group could both fill in a bar, the stop loss wins, unless
   the bar opened through the take profit (the kernel's gap exit).
M8 *One-cancels-other.* A fill, partial or full, of an order with an ``oco_group`` cancels every
   other resting order of that group (``Canceled``, reason :data:`OCO_REASON`) and spends the
   group: an order submitted later into a spent group is accepted and canceled at once (the stop
   loss filled on arrival, the take profit comes next). Spent groups are remembered for the life
   of the engine (a few bytes each). A user cancel does not cascade.
M9 *What the engine does not know:* positions and balances. Reduce-only checks, balance locks
   and the creation of the attached stop-loss/take-profit orders (two orders sharing an
   ``oco_group`` after the parent fills) are the service's job.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from cryptoorchestrator.core.errors import Conflict, NotFound, ValidationFailed
from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.orders import (
    Accepted,
    Canceled,
    Expired,
    Fill,
    Filled,
    Liquidity,
    Order,
    OrderEvent,
    OrderStatus,
    Rejected,
    TimeInForce,
    Triggered,
    apply_event,
)
from cryptoorchestrator.simulator import _order_rules as order_rules
from cryptoorchestrator.simulator._order_rules import Level
from cryptoorchestrator.simulator._resting import SymbolBook
from cryptoorchestrator.simulator.fill_model import FillRules
from cryptoorchestrator.simulator.market_state import Bar, MarketState

__all__ = [
    "FOK_REASON",
    "IOC_REASON",
    "NO_LIQUIDITY_REASON",
    "OCO_REASON",
    "Bar",
    "MarketState",
    "OrderUpdate",
    "PaperExchange",
]

OCO_REASON = "oco"
"""Reason of the ``Canceled`` event of an order whose OCO sibling filled (M8)."""
IOC_REASON = "ioc: the unfilled rest was canceled"
"""Reason of the ``Canceled`` event that ends an IOC order with an unfilled rest (M4)."""
FOK_REASON = "fok: the whole quantity could not be filled at once"
"""Reason of the ``Expired`` event of a FOK order that could not be filled whole (M4)."""
NO_LIQUIDITY_REASON = "insufficient liquidity: the unfilled rest of the market order was canceled"
"""Reason of the ``Canceled`` event that ends a market order the book could not fill (M4)."""


class OrderUpdate(NamedTuple):
    """``event`` happened to the order ``order_id``: apply it with ``apply_event``."""

    order_id: str
    event: OrderEvent


@dataclass(slots=True)
class _Entry:
    """The engine's copy of one order: every event it emits is applied here first."""

    order: Order
    instrument: Instrument
    seq: int


class PaperExchange:
    """The simulated venue behind paper trading (rules M1-M9 of this module).

    ``rules`` gives the slippage model (M1); ``id_prefix`` starts every exchange order id
    (``<prefix>-<n>``). The default prefix is ``paper-`` plus a random tag, so that an engine
    started after a restart never reuses an id (and so a trade id) of an earlier one; tests pass a
    fixed prefix. Not thread-safe: one owner (the paper execution service) calls it.
    """

    def __init__(self, *, rules: FillRules | None = None, id_prefix: str | None = None) -> None:
        self._rules = rules if rules is not None else FillRules()
        self._prefix = id_prefix if id_prefix is not None else f"paper-{uuid.uuid4().hex[:8]}"
        self._counter = 0
        self._seq = 0
        self._entries: dict[str, _Entry] = {}  # resting orders by order id
        self._books: dict[str, SymbolBook] = {}
        self._groups: dict[str, dict[str, None]] = {}  # oco group -> resting order ids, in order
        self._spent_groups: set[str] = set()

    @property
    def rules(self) -> FillRules:
        return self._rules

    # --- public API ---------------------------------------------------------------------------

    def submit(
        self, order: Order, *, instrument: Instrument, market: MarketState, now: datetime
    ) -> list[OrderUpdate]:
        """Submit a ``pending`` order against the quote ``market``; return what happened to it
        at once (M2: ``Rejected``, or ``Accepted`` then ``Triggered``/``Filled``/``Canceled``/
        ``Expired``) and to the resting orders it cancelled (M8). A GTC order that is still open
        afterwards rests. Raises ``ValidationFailed`` when the order is not pending or the
        symbols of order, instrument and market differ, ``Conflict`` when the id already rests.
        """
        self._check_submission(order, instrument, market)
        reason = order_rules.rejection_reason(order, instrument, market)
        if reason is not None:
            return [OrderUpdate(order.id, Rejected(now, reason))]
        out: list[OrderUpdate] = []
        self._seq += 1
        entry = _Entry(order, instrument, self._seq)
        self._emit(entry, Accepted(self._next_exchange_id(), now), out)
        if order.oco_group is not None and order.oco_group in self._spent_groups:
            self._emit(entry, Canceled(now, OCO_REASON), out)  # M8: the group is already spent
            return out
        if order.type.is_stop and not order.triggered:
            if not order_rules.quote_triggers(order, market):
                self._rest(entry)  # M5
                return out
            self._emit(entry, Triggered(now), out)
        self._execute(
            entry, order_rules.quote_levels(entry.order, market), volume=market.bar_volume, now=now, out=out
        )
        if not entry.order.is_terminal:
            self._rest(entry)
        return out

    def on_market(self, market: MarketState | Bar, *, now: datetime) -> list[OrderUpdate]:
        """Match the resting orders of ``market.symbol`` against a new quote or a closed bar
        (M5-M8); return the events in the order they happened."""
        book = self._books.get(market.symbol)
        if not book:  # no book yet, or nothing resting in it
            return []
        out: list[OrderUpdate] = []
        if isinstance(market, Bar):
            self._on_bar(book, market, now, out)
        else:
            self._on_quote(book, market, now, out)
        return out

    def cancel(self, order_id: str, *, now: datetime) -> list[OrderUpdate]:
        """Cancel a resting order (not its OCO siblings: M8). Raises ``NotFound`` when nothing
        rests under ``order_id`` (it filled, ended, or was never accepted), as a venue does."""
        entry = self._entries.get(order_id)
        if entry is None:
            raise NotFound(f"No open paper order {order_id}.", details={"order_id": order_id})
        out: list[OrderUpdate] = []
        self._emit(entry, Canceled(now), out)
        self._forget(entry)
        return out

    def restore(self, orders: Iterable[Order], *, instruments: Mapping[str, Instrument]) -> None:
        """Rebuild the resting orders from persisted ones after a restart, oldest first.

        Open orders rest again. They must have been accepted (``new`` or ``partially_filled``
        with an exchange order id), must not be market orders and need their instrument in
        ``instruments``; otherwise ``ValidationFailed`` is raised and nothing is restored (a paper
        order left ``pending`` was never accepted: submit it again). An order id that already
        rests raises ``Conflict``. Terminal orders do not rest, but they are worth passing too:
        any order given with a fill spends its OCO group (M8: a sibling submitted after the
        restart is canceled), and the exchange order ids of all of them move the id counter past
        them (with a fixed ``id_prefix`` a new order could otherwise repeat an old id).
        """
        given = sorted(orders, key=lambda o: o.created_at)
        resting: list[Order] = []
        ids: set[str] = set()
        for order in given:
            if order.is_terminal:
                continue
            order_rules.check_restorable(order, instruments)
            if order.id in self._entries or order.id in ids:
                raise Conflict(f"The paper order {order.id} is already open.", details={"order_id": order.id})
            ids.add(order.id)
            resting.append(order)
        for order in given:  # checked: from here on nothing raises
            self._adopt_exchange_id(order.exchange_order_id or "")
            if order.oco_group is not None and order.filled_quantity > 0:
                self._spent_groups.add(order.oco_group)  # M8, across the restart
        for order in resting:
            self._seq += 1
            self._rest(_Entry(order, instruments[order.symbol], self._seq))

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """The resting orders (of ``symbol``, or all), in arrival order, with their fills so far."""
        entries = sorted(self._entries.values(), key=lambda e: e.seq)
        return [e.order for e in entries if symbol is None or e.order.symbol == symbol]

    # --- matching -----------------------------------------------------------------------------

    def _on_quote(self, book: SymbolBook, market: MarketState, now: datetime, out: list[OrderUpdate]) -> None:
        # M7: stops first, then limits; a stop-limit left open by this quote rests afterwards.
        left = self._run_stops(
            book.pop_stops(lowest=market.last, highest=market.last),
            lambda order: order_rules.quote_levels(order, market),
            volume=market.bar_volume,
            now=now,
            out=out,
        )
        self._run_limits(
            book.pop_limits(lowest=market.best_ask, highest=market.best_bid),
            order_rules.limit_price,
            now=now,
            out=out,
        )
        self._rest_again(left)

    def _on_bar(self, book: SymbolBook, bar: Bar, now: datetime, out: list[OrderUpdate]) -> None:
        def levels(order: Order) -> Sequence[Level]:
            # M3/M5: at the stop price, or at the open when the bar gapped through it (kernel R5a/b).
            return ((order_rules.worse(order.side, order_rules.stop_price(order), bar.open), None),)

        def maker_price(order: Order) -> Decimal:
            # M6: the limit, or the open when the bar opened through it (kernel R5d).
            return order_rules.better(order.side, order_rules.limit_price(order), bar.open)

        # M7, first step: what the open already passed.
        opened = self._run_stops(
            book.pop_stops(lowest=bar.open, highest=bar.open), levels, volume=bar.volume, now=now, out=out
        )
        self._run_limits(book.pop_limits(lowest=bar.open, highest=bar.open), maker_price, now=now, out=out)
        self._rest_again(opened)  # M5: triggered at the open, the rest of the bar came after
        # Second step: what the range reaches.
        inside = self._run_stops(
            book.pop_stops(lowest=bar.low, highest=bar.high), levels, volume=bar.volume, now=now, out=out
        )
        self._run_limits(book.pop_limits(lowest=bar.low, highest=bar.high), maker_price, now=now, out=out)
        self._rest_again(inside)  # M5: triggered inside the bar, they rest from the next bar

    def _run_stops(
        self,
        popped: list[tuple[int, str]],
        levels: Callable[[Order], Sequence[Level]],
        *,
        volume: Decimal | None,
        now: datetime,
        out: list[OrderUpdate],
    ) -> list[_Entry]:
        """Trigger the popped stops in arrival order (M5); return the stop-limits left open."""
        left: list[_Entry] = []
        for entry in self._ordered(popped):
            if self._entries.get(entry.order.id) is not entry:
                continue  # canceled by an OCO sibling earlier in this update (M8)
            self._emit(entry, Triggered(now), out)
            self._execute(entry, levels(entry.order), volume=volume, now=now, out=out)
            if entry.order.is_terminal:
                self._forget(entry)
            else:
                left.append(entry)
        return left

    def _run_limits(
        self,
        popped: list[tuple[int, str]],
        price: Callable[[Order], Decimal],
        *,
        now: datetime,
        out: list[OrderUpdate],
    ) -> None:
        """Fill the popped resting limits in full as makers (M6), stop-limits first (M7)."""
        for entry in self._ordered(popped):
            if self._entries.get(entry.order.id) is not entry:
                continue
            self._fill(entry, price(entry.order), entry.order.remaining, Liquidity.MAKER, now, out)
            self._spend_group(entry, now, out)
            self._forget(entry)

    def _execute(
        self,
        entry: _Entry,
        levels: Sequence[Level],
        *,
        volume: Decimal | None,
        now: datetime,
        out: list[OrderUpdate],
    ) -> None:
        """Take liquidity now (M3) and apply the time in force (M4). The order is left open
        only when it is a GTC limit order (or triggered stop-limit) with a rest."""
        order = entry.order
        side = order.side
        plan = order_rules.plan_take(order, entry.instrument, levels)
        planned = sum((quantity for _, quantity in plan), Decimal(0))
        if order.time_in_force is TimeInForce.FOK and planned < order.remaining:
            self._emit(entry, Expired(now, FOK_REASON), out)
            return
        limit = order.price if order.type.has_limit_price else None
        bar_volume = volume if volume is not None else Decimal(0)  # M1: unknown volume -> the cap
        for level_price, quantity in plan:
            price = self._rules.fill_price(level_price, side.sign, quantity=planned, bar_volume=bar_volume)
            if limit is not None:
                price = order_rules.better(side, price, limit)  # M3: never worse than the limit
            self._fill(entry, price, quantity, Liquidity.TAKER, now, out)
        if plan:
            self._spend_group(entry, now, out)
        if entry.order.is_terminal:
            return
        if limit is None:
            self._emit(entry, Canceled(now, NO_LIQUIDITY_REASON), out)
        elif order.time_in_force is TimeInForce.IOC:
            self._emit(entry, Canceled(now, IOC_REASON), out)

    def _fill(
        self,
        entry: _Entry,
        price: Decimal,
        quantity: Decimal,
        liquidity: Liquidity,
        now: datetime,
        out: list[OrderUpdate],
    ) -> None:
        order = entry.order
        instrument = entry.instrument
        fill = Fill(
            trade_id=f"{order.exchange_order_id}-{len(order.trade_ids) + 1}",  # M2
            order_id=order.id,
            symbol=order.symbol,
            side=order.side,
            price=price,
            quantity=quantity,
            fee=price * quantity * instrument.fee_rate(liquidity),  # M1
            fee_asset=instrument.margin_asset,
            liquidity=liquidity,
            timestamp=now,
        )
        self._emit(entry, Filled(fill), out)

    def _spend_group(self, entry: _Entry, now: datetime, out: list[OrderUpdate]) -> None:
        """M8: cancel the other resting members of the order's OCO group."""
        group = entry.order.oco_group
        if group is None:
            return
        self._spent_groups.add(group)
        members = self._groups.get(group)
        if not members:
            return
        for order_id in [m for m in members if m != entry.order.id]:
            sibling = self._entries[order_id]
            self._emit(sibling, Canceled(now, OCO_REASON), out)
            self._forget(sibling)

    # --- bookkeeping --------------------------------------------------------------------------

    def _emit(self, entry: _Entry, event: OrderEvent, out: list[OrderUpdate]) -> None:
        entry.order = apply_event(entry.order, event)
        out.append(OrderUpdate(entry.order.id, event))

    def _ordered(self, popped: list[tuple[int, str]]) -> list[_Entry]:
        entries = [entry for _, order_id in popped if (entry := self._entries.get(order_id)) is not None]
        entries.sort(key=lambda e: (not e.order.type.is_stop, e.seq))  # M7
        return entries

    def _rest(self, entry: _Entry) -> None:
        order = entry.order
        self._entries[order.id] = entry
        if order.oco_group is not None:
            self._groups.setdefault(order.oco_group, {})[order.id] = None
        book = self._books.get(order.symbol)
        if book is None:
            book = self._books[order.symbol] = SymbolBook()
        if order_rules.waits_for_trigger(order):
            book.add_stop(order.id, entry.seq, order.side, order_rules.stop_price(order))
        else:
            book.add_limit(order.id, entry.seq, order.side, order_rules.limit_price(order))

    def _rest_again(self, entries: list[_Entry]) -> None:
        for entry in entries:
            if self._entries.get(entry.order.id) is entry and not entry.order.is_terminal:
                self._rest(entry)

    def _forget(self, entry: _Entry) -> None:
        order = entry.order
        if self._entries.get(order.id) is entry:
            del self._entries[order.id]
        book = self._books.get(order.symbol)
        if book is not None:
            book.discard(order.id)
        group = order.oco_group
        if group is not None and (members := self._groups.get(group)) is not None:
            members.pop(order.id, None)
            if not members:
                del self._groups[group]

    def _next_exchange_id(self) -> str:
        self._counter += 1
        return f"{self._prefix}-{self._counter}"

    def _adopt_exchange_id(self, exchange_order_id: str) -> None:
        # Restored ids of this prefix push the counter past them: a new id never repeats one.
        head, _, number = exchange_order_id.rpartition("-")
        if head == self._prefix and number.isdigit():
            self._counter = max(self._counter, int(number))

    def _check_submission(self, order: Order, instrument: Instrument, market: MarketState) -> None:
        if order.symbol != instrument.symbol or order.symbol != market.symbol:
            raise ValidationFailed(
                f"order, instrument and market symbols differ: {order.symbol}, {instrument.symbol}, "
                f"{market.symbol}",
                details={"field": "symbol"},
            )
        if order.status is not OrderStatus.PENDING:
            raise ValidationFailed(
                f"only pending orders can be submitted; {order.id} is {order.status.value}",
                details={"field": "status", "order_id": order.id},
            )
        if order.id in self._entries:
            raise Conflict(f"The paper order {order.id} is already open.", details={"order_id": order.id})
