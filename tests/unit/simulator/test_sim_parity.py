"""Parity with the backtester: the paper exchange prices a market order and a stop exactly as
the fill model does (FillRules, and fill_price_nb within float tolerance), and a bracketed long
position exits on the same bar, for the same reason, at the same price as in the fast kernel."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from cryptoorchestrator.backtest.engine import BacktestConfig, run_backtest
from cryptoorchestrator.backtest.kernel import EXIT_OPEN, EXIT_STOP_LOSS, EXIT_TAKE_PROFIT
from cryptoorchestrator.domain.orders import Order, OrderStatus
from cryptoorchestrator.simulator.fill_model import (
    BUY,
    SELL,
    SLIPPAGE_FIXED,
    SLIPPAGE_VOLUME,
    FillRules,
    fill_price_nb,
    slippage_bps_nb,
)
from cryptoorchestrator.simulator.market_state import Bar, MarketState
from cryptoorchestrator.simulator.matching import PaperExchange

from ._sim_support import BTC, SYMBOL, T0, D, Tracker, order, quote

PRICES = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2)
QUANTITIES = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("50"), places=3)
VOLUMES = st.decimals(min_value=Decimal("0"), max_value=Decimal("10000"), places=3)
BPS = st.decimals(min_value=Decimal("0"), max_value=Decimal("200"), places=1)
MODELS = st.sampled_from([SLIPPAGE_FIXED, SLIPPAGE_VOLUME])
SIDES = st.sampled_from(["buy", "sell"])


def _rules(model: int, bps: Decimal) -> FillRules:
    return FillRules(slippage_model=model, slippage_bps=bps, impact_k_bps=D(10), impact_cap_bps=D(80))


def _nb_price(rules: FillRules, reference: Decimal, side: int, quantity: Decimal, volume: Decimal) -> float:
    bps = slippage_bps_nb(
        float(quantity),
        float(volume),
        rules.slippage_model,
        float(rules.slippage_bps),
        float(rules.impact_k_bps),
        float(rules.impact_cap_bps),
    )
    return fill_price_nb(float(reference), side, bps)


@settings(max_examples=200, deadline=None)
@given(last=PRICES, quantity=QUANTITIES, volume=VOLUMES, bps=BPS, model=MODELS, side=SIDES)
def test_sim_market_order_price_equals_the_fill_model(
    last: Decimal, quantity: Decimal, volume: Decimal, bps: Decimal, model: int, side: str
) -> None:
    rules = _rules(model, bps)
    engine, tracker = PaperExchange(rules=rules, id_prefix="p"), Tracker()
    done = tracker.submit(engine, order(side, "market", str(quantity)), quote(str(last), volume=str(volume)))
    code = BUY if side == "buy" else SELL
    expected = rules.fill_price(last, code, quantity=quantity, bar_volume=volume)
    assert done.status is OrderStatus.FILLED
    (fill,) = tracker.fills_of(done.id)
    assert fill.price == expected
    assert float(fill.price) == pytest.approx(_nb_price(rules, last, code, quantity, volume), rel=1e-9)
    assert fill.fee == expected * quantity * BTC.taker_fee


@settings(max_examples=200, deadline=None)
@given(
    stop=PRICES,
    gap=st.decimals(min_value=Decimal("-50"), max_value=Decimal("50"), places=2),
    quantity=QUANTITIES,
    volume=VOLUMES,
    bps=BPS,
    model=MODELS,
    side=SIDES,
)
def test_sim_stop_market_price_on_a_bar_equals_the_fill_model_at_the_stop_or_the_open(
    stop: Decimal, gap: Decimal, quantity: Decimal, volume: Decimal, bps: Decimal, model: int, side: str
) -> None:
    rules = _rules(model, bps)
    engine, tracker = PaperExchange(rules=rules, id_prefix="p"), Tracker()
    code = BUY if side == "buy" else SELL
    away = stop - code * D("100000")  # far on the untriggered side of the stop
    resting = tracker.submit(
        engine, order(side, "stop_market", str(quantity), stop=str(stop)), quote(str(max(away, D("0.01"))))
    )
    if resting.status is not OrderStatus.NEW:
        return  # the quote at the floor already triggered it: not this test's case
    open_ = max(stop + gap, D("0.01"))
    bar = Bar(
        symbol=SYMBOL,
        open=open_,
        high=max(open_, stop),
        low=min(open_, stop),
        close=open_,
        volume=volume,
        timestamp=T0,
    )
    tracker.apply(engine.on_market(bar, now=T0))
    done = tracker[resting.id]
    reference = max(stop, open_) if code == BUY else min(stop, open_)
    assert done.status is OrderStatus.FILLED
    (fill,) = tracker.fills_of(done.id)
    assert fill.price == rules.fill_price(reference, code, quantity=quantity, bar_volume=volume)
    assert float(fill.price) == pytest.approx(_nb_price(rules, reference, code, quantity, volume), rel=1e-9)


# --- a bracketed long: kernel and paper exchange bar by bar ----------------------------------------

PARITY = replace(
    BTC, price_tick=Decimal(0), quantity_step=Decimal(0), maker_fee=D("0.0002"), taker_fee=D("0.0007")
)


@st.composite
def bar_paths(draw: st.DrawFn) -> list[tuple[int, int, int, int]]:
    """Integer OHLC bars: the bracket levels (open * (1 + slippage) * (1 -/+ fraction)) are never
    integers, so no low or high ties a level and float and Decimal cannot disagree on a touch."""
    n = draw(st.integers(min_value=3, max_value=25))
    price = draw(st.integers(min_value=80, max_value=120))
    rows = []
    for _ in range(n):
        open_ = max(10, price + draw(st.integers(min_value=-6, max_value=6)))
        close = max(10, open_ + draw(st.integers(min_value=-6, max_value=6)))
        high = max(open_, close) + draw(st.integers(min_value=0, max_value=5))
        low = max(1, min(open_, close) - draw(st.integers(min_value=0, max_value=5)))
        rows.append((open_, high, low, close))
        price = close
    return rows


@settings(max_examples=150, deadline=None)
@given(
    rows=bar_paths(),
    sl=st.sampled_from([0.02, 0.03, 0.05]),
    tp=st.sampled_from([0.02, 0.04, 0.07]),
    model=st.sampled_from(["fixed", "volume"]),
)
def test_sim_bracketed_long_exits_like_the_kernel(
    rows: list[tuple[int, int, int, int]], sl: float, tp: float, model: str
) -> None:
    quantity, volume = D("2"), D("500")
    config = BacktestConfig(
        initial_cash=1e9,
        sizing="fixed_quantity",
        size=float(quantity),
        stop_loss=sl,
        take_profit=tp,
        taker_fee=float(PARITY.taker_fee),
        maker_fee=float(PARITY.maker_fee),
        slippage=model,
        slippage_bps=5.0,
        impact_k_bps=10.0,
        impact_cap_bps=80.0,
    )
    arr = np.array(rows, dtype=np.float64)
    candles = {k: arr[:, i] for i, k in enumerate(("open", "high", "low", "close"))}
    candles["volume"] = np.full(len(rows), float(volume))
    entry = np.zeros(len(rows), dtype=bool)
    entry[0] = True
    (trade,) = run_backtest(candles, {"entry_long": entry}, config).trades

    rules = FillRules(
        slippage_model=SLIPPAGE_FIXED if model == "fixed" else SLIPPAGE_VOLUME,
        slippage_bps=D(5),
        impact_k_bps=D(10),
        impact_cap_bps=D(80),
    )
    engine, tracker = PaperExchange(rules=rules, id_prefix="p"), Tracker()
    bars = [
        Bar(SYMBOL, D(o), D(h), D(lo), D(c), volume, T0 + timedelta(minutes=i))
        for i, (o, h, lo, c) in enumerate(rows)
    ]
    # The signal of bar 0 is acted on at bar 1's open (kernel R1); the service then attaches
    # the stop loss and the take profit as one OCO group (M9).
    opening = quote(str(bars[1].open), volume=str(volume))
    parent = _submit(tracker, engine, order("buy", "market", str(quantity)), opening)
    entry_price = parent.average_price
    assert entry_price is not None
    assert float(entry_price) == pytest.approx(trade["entry_price"], rel=1e-12)
    stop_level = entry_price * (1 - D(str(sl)))
    take_level = entry_price * (1 + D(str(tp)))
    sl_order = _submit(
        tracker, engine, order("sell", "stop_market", str(quantity), stop=str(stop_level), oco="b"), opening
    )
    tp_order = _submit(
        tracker, engine, order("sell", "limit", str(quantity), price=str(take_level), oco="b"), opening
    )
    exit_bar = None
    for i, b in enumerate(bars[1:], start=1):
        tracker.apply(engine.on_market(b, now=b.timestamp))
        if any(tracker[o.id].status is OrderStatus.FILLED for o in (sl_order, tp_order)):
            exit_bar = i
            break

    event(f"kernel exit reason {trade['exit_reason']}")
    if trade["exit_reason"] == EXIT_OPEN:
        assert exit_bar is None
        assert len(engine.open_orders()) == 2
        return
    assert exit_bar == trade["exit_bar"]
    closed = tracker[sl_order.id] if trade["exit_reason"] == EXIT_STOP_LOSS else tracker[tp_order.id]
    other = tracker[tp_order.id] if trade["exit_reason"] == EXIT_STOP_LOSS else tracker[sl_order.id]
    assert trade["exit_reason"] in (EXIT_STOP_LOSS, EXIT_TAKE_PROFIT)
    assert closed.status is OrderStatus.FILLED
    assert other.status is OrderStatus.CANCELED
    assert closed.average_price is not None
    assert float(closed.average_price) == pytest.approx(trade["exit_price"], rel=1e-9)
    assert float(closed.fees["USDT"]) == pytest.approx(trade["exit_fee"], rel=1e-9)
    assert float(parent.fees["USDT"]) == pytest.approx(trade["entry_fee"], rel=1e-9)


def _submit(tracker: Tracker, engine: PaperExchange, order_: Order, market: MarketState) -> Order:
    tracker.track(order_)
    tracker.apply(engine.submit(order_, instrument=PARITY, market=market, now=T0))
    return tracker[order_.id]
