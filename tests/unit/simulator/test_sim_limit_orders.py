"""Limit orders: marketable on arrival (taker, capped at the limit), resting (maker), IOC, FOK,
and resting fills on quotes and bars (M3, M4, M6)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cryptoorchestrator.domain.orders import Canceled, Expired, Liquidity, OrderStatus
from cryptoorchestrator.simulator.fill_model import FillRules
from cryptoorchestrator.simulator.matching import FOK_REASON, IOC_REASON

from ._sim_support import BTC, D, Tracker, at, bar, book, exchange, fills, kinds, order, quote


def test_sim_limit_not_marketable_rests_as_new() -> None:
    engine, tracker = exchange(), Tracker()
    o = tracker.submit(engine, order("buy", "limit", price="99"), quote("100", bid="99.5", ask="100.5"))
    assert o.status is OrderStatus.NEW
    assert [r.id for r in engine.open_orders()] == [o.id]
    assert engine.open_orders()[0].status is OrderStatus.NEW


def test_sim_marketable_limit_fills_at_the_touch_as_a_taker() -> None:
    engine, tracker = exchange(), Tracker()
    o = order("buy", "limit", price="105")
    tracker.track(o)
    updates = tracker.apply(
        engine.submit(o, instrument=BTC, market=quote("100", bid="99", ask="101"), now=o.created_at)
    )
    (filled,) = fills(updates)
    assert filled.fill.price == D(101)
    assert filled.fill.liquidity is Liquidity.TAKER
    assert tracker[o.id].status is OrderStatus.FILLED


def test_sim_marketable_limit_slippage_is_capped_at_the_limit() -> None:
    engine, tracker = exchange(FillRules(slippage_bps=Decimal(100))), Tracker()
    buy = tracker.submit(engine, order("buy", "limit", price="101.5"), quote("100", ask="101"))
    sell = tracker.submit(engine, order("sell", "limit", price="98.5"), quote("100", bid="99"))
    assert buy.average_price == D("101.5")  # 101 * 1.01 = 102.01 would be worse than the limit
    assert sell.average_price == D("98.5")
    roomy = tracker.submit(engine, order("buy", "limit", price="200"), quote("100", ask="101"))
    assert roomy.average_price == D("101") * D("1.01")


def test_sim_marketable_limit_walks_only_levels_within_the_limit_then_rests() -> None:
    engine, tracker = exchange(), Tracker()
    depth = book(asks=[("101", "0.3"), ("102", "0.3"), ("103", "5")])
    o = order("buy", "limit", "1", price="102")
    tracker.track(o)
    updates = tracker.apply(
        engine.submit(o, instrument=BTC, market=quote("100", book=depth), now=o.created_at)
    )
    assert [(f.fill.price, f.fill.quantity) for f in fills(updates)] == [
        (D(101), D("0.3")),
        (D(102), D("0.3")),
    ]
    rested = tracker[o.id]
    assert rested.status is OrderStatus.PARTIALLY_FILLED
    assert engine.open_orders()[0].remaining == D("0.4")
    # The rest is a maker order now: it fills in full at its limit when the ask reaches it.
    later = tracker.apply(engine.on_market(quote("101.9", ask="101.95"), now=at(1)))
    (maker,) = fills(later)
    assert (maker.fill.price, maker.fill.quantity, maker.fill.liquidity) == (
        D(102),
        D("0.4"),
        Liquidity.MAKER,
    )
    assert maker.fill.fee == D(102) * D("0.4") * BTC.maker_fee
    assert maker.fill.trade_id == "paper-1-3"
    assert tracker[o.id].status is OrderStatus.FILLED
    assert engine.open_orders() == []


def test_sim_ioc_limit_fills_what_it_can_and_cancels_the_rest() -> None:
    engine, tracker = exchange(), Tracker()
    o = order("sell", "limit", "1", price="99", tif="IOC")
    tracker.track(o)
    depth = book(bids=[("100", "0.25"), ("99", "0.25"), ("98", "9")])
    updates = tracker.apply(
        engine.submit(o, instrument=BTC, market=quote("100", book=depth), now=o.created_at)
    )
    assert kinds(updates) == ["Accepted", "Filled", "Filled", "Canceled"]
    last = updates[-1].event
    assert isinstance(last, Canceled)
    assert last.reason == IOC_REASON
    assert tracker[o.id].filled_quantity == D("0.5")
    assert engine.open_orders() == []


def test_sim_ioc_limit_that_is_not_marketable_is_canceled_at_once() -> None:
    engine, tracker = exchange(), Tracker()
    done = tracker.submit(engine, order("buy", "limit", price="90", tif="IOC"), quote("100"))
    assert done.status is OrderStatus.CANCELED
    assert done.filled_quantity == 0
    assert engine.open_orders() == []


@pytest.mark.parametrize(
    ("price", "status"),
    [("101", OrderStatus.EXPIRED), ("102", OrderStatus.FILLED), ("90", OrderStatus.EXPIRED)],
)
def test_sim_fok_limit_fills_whole_or_expires(price: str, status: OrderStatus) -> None:
    engine, tracker = exchange(), Tracker()
    o = order("buy", "limit", "1", price=price, tif="FOK")
    tracker.track(o)
    depth = book(asks=[("101", "0.5"), ("102", "0.5")])
    updates = tracker.apply(
        engine.submit(o, instrument=BTC, market=quote("100", book=depth), now=o.created_at)
    )
    assert tracker[o.id].status is status
    if status is OrderStatus.EXPIRED:
        assert kinds(updates) == ["Accepted", "Expired"]
        expired = updates[-1].event
        assert isinstance(expired, Expired)
        assert expired.reason == FOK_REASON
    assert engine.open_orders() == []


def test_sim_fok_limit_without_book_fills_whole_when_marketable() -> None:
    engine, tracker = exchange(), Tracker()
    assert tracker.submit(engine, order("sell", "limit", price="99", tif="FOK"), quote("100")).status is (
        OrderStatus.FILLED
    )


def test_sim_resting_buy_fills_on_a_quote_at_the_limit_when_the_ask_reaches_it() -> None:
    engine, tracker = exchange(), Tracker()
    o = tracker.submit(engine, order("buy", "limit", price="99"), quote("100", ask="100.5"))
    assert tracker.apply(engine.on_market(quote("99.5", ask="99.2"), now=at(1))) == []
    updates = tracker.apply(engine.on_market(quote("98", ask="98.5"), now=at(2)))
    (maker,) = fills(updates)
    assert maker.fill.price == D(99)  # M6: the market traded through the resting order at its price
    assert maker.fill.timestamp == at(2)
    assert tracker[o.id].status is OrderStatus.FILLED


def test_sim_resting_sell_fills_on_a_quote_when_the_bid_reaches_it_falling_back_to_last() -> None:
    engine, tracker = exchange(), Tracker()
    with_bid = tracker.submit(engine, order("sell", "limit", price="101"), quote("100"))
    last_only = tracker.submit(engine, order("sell", "limit", price="102"), quote("100"))
    tracker.apply(engine.on_market(quote("101.5", bid="101"), now=at(1)))
    assert tracker[with_bid.id].status is OrderStatus.FILLED
    assert tracker[last_only.id].status is OrderStatus.NEW
    tracker.apply(engine.on_market(quote("102"), now=at(2)))
    assert tracker[last_only.id].status is OrderStatus.FILLED


def test_sim_resting_limit_on_a_bar_fills_at_the_limit_or_a_better_open() -> None:
    engine, tracker = exchange(), Tracker()
    inside = tracker.submit(engine, order("buy", "limit", price="95"), quote("100"))
    gapped = tracker.submit(engine, order("buy", "limit", price="99"), quote("100"))
    missed = tracker.submit(engine, order("buy", "limit", price="90"), quote("100"))
    sell_gap = tracker.submit(engine, order("sell", "limit", price="97"), quote("96"))
    tracker.apply(engine.on_market(bar("98", "99", "94", "96"), now=at(60)))
    assert tracker[inside.id].average_price == D(95)
    assert tracker[gapped.id].average_price == D(98)  # the bar opened below the buy limit: the open
    assert tracker[sell_gap.id].average_price == D(98)  # opened above the sell limit: the open
    assert tracker[missed.id].status is OrderStatus.NEW
    assert [o.id for o in engine.open_orders()] == [missed.id]


def test_sim_resting_limit_fills_on_touch_of_the_bar_range() -> None:
    engine, tracker = exchange(), Tracker()
    buy = tracker.submit(engine, order("buy", "limit", price="95"), quote("100"))
    sell = tracker.submit(engine, order("sell", "limit", price="105"), quote("100"))
    tracker.apply(engine.on_market(bar("100", "105", "95", "100"), now=at(60)))
    assert tracker[buy.id].status is OrderStatus.FILLED
    assert tracker[sell.id].status is OrderStatus.FILLED


def test_sim_updates_for_other_symbols_leave_the_book_alone() -> None:
    engine, tracker = exchange(), Tracker()
    tracker.submit(engine, order("buy", "limit", price="95"), quote("100"))
    assert engine.on_market(bar("1", "1", "1", "1", symbol="ETH/USDT"), now=at(1)) == []
    assert engine.on_market(quote("1", symbol="ETH/USDT"), now=at(1)) == []
    assert len(engine.open_orders("BTC/USDT")) == 1
    assert engine.open_orders("ETH/USDT") == []


def test_sim_resting_orders_fill_in_arrival_order_within_an_update() -> None:
    engine, tracker = exchange(), Tracker()
    a = tracker.submit(engine, order("buy", "limit", price="95"), quote("100"))
    b = tracker.submit(engine, order("buy", "limit", price="97"), quote("100"))
    c = tracker.submit(engine, order("buy", "limit", price="95"), quote("100"))
    updates = tracker.apply(engine.on_market(bar("100", "100", "90", "92"), now=at(1)))
    assert [f.fill.order_id for f in fills(updates)] == [a.id, b.id, c.id]
