"""Property test: random order flows against random price paths (quotes, books and bars).

Whatever happens: fills never exceed the order quantity nor take a price worse than the limit,
fill quantities sit on the step, fees are price * quantity * rate, every event applies cleanly to
the caller's copy of its order (strict :class:`Tracker`), the engine's open orders are exactly
the caller's open orders (terminal orders leave the book), and an OCO group never keeps a second
open member once one of them traded."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptoorchestrator.core.errors import NotFound
from cryptoorchestrator.domain.market import OrderBook
from cryptoorchestrator.domain.orders import Liquidity, Order, OrderSide, OrderStatus
from cryptoorchestrator.simulator.fill_model import SLIPPAGE_FIXED, SLIPPAGE_VOLUME, FillRules
from cryptoorchestrator.simulator.market_state import Bar, MarketState
from cryptoorchestrator.simulator.matching import PaperExchange

from ._sim_support import BTC, SYMBOL, T0, Tracker, order

TICK = BTC.price_tick
STEP = BTC.quantity_step
OPEN = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})

level_sizes = st.lists(st.integers(min_value=0, max_value=20_000), min_size=0, max_size=4)
submits = st.tuples(
    st.just("submit"),
    st.sampled_from(["buy", "sell"]),
    st.sampled_from(["market", "limit", "stop_market", "stop_limit"]),
    st.integers(min_value=1, max_value=3000),  # quantity in steps
    st.integers(min_value=-300, max_value=300),  # limit offset from the price, in ticks
    st.integers(min_value=-300, max_value=300),  # stop offset
    st.sampled_from(["GTC", "GTC", "IOC", "FOK"]),
    st.sampled_from([None, None, "g1", "g2", "g3"]),
    st.one_of(st.none(), st.tuples(level_sizes, level_sizes)),  # against a book: bid and ask sizes
)
cancels = st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=50))
quotes = st.tuples(
    st.just("quote"),
    st.integers(min_value=-400, max_value=400),  # move in ticks
    st.integers(min_value=0, max_value=50),  # half spread in ticks
    st.one_of(st.none(), st.tuples(level_sizes, level_sizes)),  # with a book
    st.one_of(st.none(), st.integers(min_value=0, max_value=100)),  # bar volume
)
bars = st.tuples(
    st.just("bar"),
    st.integers(min_value=-400, max_value=400),  # open move
    st.integers(min_value=-400, max_value=400),  # close move from the open
    st.integers(min_value=0, max_value=300),  # wick above
    st.integers(min_value=0, max_value=300),  # wick below
    st.integers(min_value=0, max_value=100),  # volume
)
actions = st.lists(st.one_of(submits, submits, cancels, quotes, bars), min_size=1, max_size=40)


def _book(price: Decimal, half: int, bid_sizes: list[int], ask_sizes: list[int]) -> OrderBook:
    # Sizes in 1e-4 units: finer than the step, so level quantities get rounded down.
    unit = Decimal("0.0001")
    bids = tuple(
        (price - (half + i) * TICK, s * unit)
        for i, s in enumerate(bid_sizes)
        if price - (half + i) * TICK > 0
    )
    asks = tuple((price + (half + i) * TICK, s * unit) for i, s in enumerate(ask_sizes))
    return OrderBook(symbol=SYMBOL, timestamp=None, bids=bids, asks=asks, source="hypothesis")


def _price(ticks: int) -> Decimal:
    return max(ticks, 1) * TICK


class Flow:
    def __init__(self, engine: PaperExchange) -> None:
        self.engine = engine
        self.orders_made = 0
        self.tracker = Tracker()
        self.ticks = 10_000  # 100.00
        self.market = MarketState(symbol=SYMBOL, last=_price(self.ticks), timestamp=T0)
        self.clock = 0

    def now(self):  # type: ignore[no-untyped-def]
        self.clock += 1
        return T0 + timedelta(seconds=self.clock)

    def run(self, action: tuple) -> None:  # type: ignore[type-arg]
        getattr(self, f"_{action[0]}")(*action[1:])
        self.check()

    def _submit(self, side, type_, steps, limit_off, stop_off, tif, oco, sizes) -> None:  # type: ignore[no-untyped-def]
        self.orders_made += 1
        o = order(
            side,
            type_,
            str(steps * STEP),
            price=str(_price(self.ticks + limit_off)) if type_ in ("limit", "stop_limit") else None,
            stop=str(_price(self.ticks + stop_off)) if type_.startswith("stop") else None,
            tif=tif,
            oco=oco,
            order_id=f"f{self.orders_made}",
        )
        market = self.market
        if sizes is not None:
            book = _book(market.last, 1, *sizes)
            market = MarketState(symbol=SYMBOL, last=market.last, timestamp=T0, book=book)
        self.tracker.track(o)
        self.tracker.apply(self.engine.submit(o, instrument=BTC, market=market, now=self.now()))

    def _cancel(self, index: int) -> None:
        open_ = self.engine.open_orders()
        if not open_:
            with pytest.raises(NotFound):
                self.engine.cancel("nope", now=self.now())
            return
        target = open_[index % len(open_)]
        self.tracker.apply(self.engine.cancel(target.id, now=self.now()))
        assert self.tracker[target.id].status is OrderStatus.CANCELED

    def _quote(
        self, move: int, half: int, sizes: tuple[list[int], list[int]] | None, volume: int | None
    ) -> None:
        self.ticks = max(1, self.ticks + move)
        last = _price(self.ticks)
        bid = _price(self.ticks - half)
        ask = _price(self.ticks + half)
        book = None
        if sizes is not None:
            book = _book(last, max(half, 1), *sizes)
        self.market = MarketState(
            symbol=SYMBOL,
            last=last,
            timestamp=T0,
            bid=bid,
            ask=ask,
            book=book,
            bar_volume=None if volume is None else Decimal(volume),
        )
        self.tracker.apply(self.engine.on_market(self.market, now=self.now()))

    def _bar(self, open_move: int, close_move: int, above: int, below: int, volume: int) -> None:
        open_ticks = max(1, self.ticks + open_move)
        close_ticks = max(1, open_ticks + close_move)
        high = max(open_ticks, close_ticks) + above
        low = max(1, min(open_ticks, close_ticks) - below)
        b = Bar(
            symbol=SYMBOL,
            open=_price(open_ticks),
            high=_price(high),
            low=_price(low),
            close=_price(close_ticks),
            volume=Decimal(volume),
            timestamp=T0,
        )
        self.ticks = close_ticks
        self.market = MarketState(symbol=SYMBOL, last=b.close, timestamp=T0)
        self.tracker.apply(self.engine.on_market(b, now=self.now()))

    def check(self) -> None:
        orders = self.tracker.orders
        for fill in self.tracker.fills:
            o = orders[fill.order_id]
            assert fill.quantity > 0
            assert fill.quantity % STEP == 0
            assert fill.fee == fill.price * fill.quantity * BTC.fee_rate(fill.liquidity)
            if o.price is not None:  # limit and stop-limit: never worse than the limit
                assert fill.price <= o.price if o.side is OrderSide.BUY else fill.price >= o.price
            if fill.liquidity is Liquidity.MAKER:
                assert o.type.has_limit_price
        for o in orders.values():
            assert 0 <= o.filled_quantity <= o.quantity
            if o.status is OrderStatus.FILLED:
                assert o.filled_quantity == o.quantity
        engine_open = {o.id: o for o in self.engine.open_orders()}
        mine = {i: o for i, o in orders.items() if o.status in OPEN}
        assert engine_open == mine  # same ids and the same state: terminal orders left the book
        self._check_oco(orders)

    @staticmethod
    def _check_oco(orders: dict[str, Order]) -> None:
        groups: dict[str, list[Order]] = {}
        for o in orders.values():
            if o.oco_group is not None and o.status is not OrderStatus.REJECTED:
                groups.setdefault(o.oco_group, []).append(o)
        for members in groups.values():
            if any(m.filled_quantity > 0 for m in members):
                still_open = [m for m in members if m.status in OPEN]
                assert len(still_open) <= 1
                assert all(m.filled_quantity > 0 for m in still_open)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flow=actions,
    model=st.sampled_from([SLIPPAGE_FIXED, SLIPPAGE_VOLUME]),
    bps=st.integers(min_value=0, max_value=300),
)
def test_sim_random_flows_keep_the_invariants(
    flow: list[tuple],
    model: int,
    bps: int,  # type: ignore[type-arg]
) -> None:
    rules = FillRules(slippage_model=model, slippage_bps=Decimal(bps))
    f = Flow(PaperExchange(rules=rules, id_prefix="p"))
    for action in flow:
        f.run(action)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow=actions)
def test_sim_restore_mid_flow_changes_nothing(flow: list[tuple]) -> None:  # type: ignore[type-arg]
    """Two engines see the same flow; one is rebuilt from the caller's orders halfway through.
    From then on both emit the same events."""
    half = len(flow) // 2
    a = Flow(PaperExchange(rules=FillRules(), id_prefix="p"))
    for action in flow[:half]:
        a.run(action)
    b = Flow(PaperExchange(rules=FillRules(), id_prefix="p"))
    b.tracker.orders = dict(a.tracker.orders)
    b.tracker.trade_ids = set(a.tracker.trade_ids)
    b.tracker.fills = list(a.tracker.fills)
    b.ticks, b.market, b.clock, b.orders_made = a.ticks, a.market, a.clock, a.orders_made
    b.engine.restore(list(a.tracker.orders.values()), instruments={SYMBOL: BTC})
    assert b.engine.open_orders() == a.engine.open_orders()
    for action in flow[half:]:
        a.run(action)
        b.run(action)
        assert b.tracker.orders == a.tracker.orders
