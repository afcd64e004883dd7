"""Stop orders: triggers on quotes and bars, gaps, slippage, stop-limit behaviour (M5, M7)."""

from __future__ import annotations

from decimal import Decimal

from cryptoorchestrator.domain.orders import Liquidity, OrderStatus, Triggered
from cryptoorchestrator.simulator.fill_model import FillRules

from ._sim_support import BTC, D, Tracker, at, bar, book, exchange, fills, kinds, order, quote

SLIP = FillRules(slippage_bps=Decimal(10))


def test_sim_stop_rests_untriggered_until_last_crosses() -> None:
    engine, tracker = exchange(), Tracker()
    buy = tracker.submit(engine, order("buy", "stop_market", stop="105"), quote("100"))
    sell = tracker.submit(engine, order("sell", "stop_market", stop="95"), quote("100"))
    assert (buy.status, buy.triggered, sell.status) == (OrderStatus.NEW, False, OrderStatus.NEW)
    # The ask above the stop does not trigger a buy stop: the last price does.
    assert engine.on_market(quote("104.99", ask="105.5"), now=at(1)) == []
    updates = tracker.apply(engine.on_market(quote("105", ask="105.1"), now=at(2)))
    assert kinds(updates) == ["Triggered", "Filled"]
    done = tracker[buy.id]
    assert done.triggered
    assert done.status is OrderStatus.FILLED
    assert done.average_price == D("105.1")  # the worse of the stop and the ask
    assert tracker[sell.id].status is OrderStatus.NEW
    tracker.apply(engine.on_market(quote("94"), now=at(3)))
    assert tracker[sell.id].average_price == D(94)  # a quote below the stop: the quote (worse)


def test_sim_stop_already_crossed_on_arrival_triggers_at_once() -> None:
    engine, tracker = exchange(SLIP), Tracker()
    o = order("sell", "stop_market", stop="101")
    tracker.track(o)
    updates = tracker.apply(engine.submit(o, instrument=BTC, market=quote("100"), now=o.created_at))
    assert kinds(updates) == ["Accepted", "Triggered", "Filled"]
    assert tracker[o.id].average_price == D(100) * D("0.999")


def test_sim_stop_market_on_a_bar_fills_at_the_stop_plus_slippage_with_the_taker_fee() -> None:
    engine, tracker = exchange(SLIP), Tracker()
    o = tracker.submit(engine, order("sell", "stop_market", stop="95"), quote("100"))
    updates = tracker.apply(engine.on_market(bar("100", "101", "90", "92", volume="50"), now=at(60)))
    (filled,) = fills(updates)
    assert filled.fill.price == D(95) * D("0.999")
    assert filled.fill.liquidity is Liquidity.TAKER
    assert isinstance(updates[0].event, Triggered)
    assert tracker[o.id].status is OrderStatus.FILLED


def test_sim_stop_market_on_a_bar_that_gapped_through_fills_at_the_open() -> None:
    engine, tracker = exchange(SLIP), Tracker()
    sell = tracker.submit(engine, order("sell", "stop_market", stop="95"), quote("100"))
    buy = tracker.submit(engine, order("buy", "stop_market", stop="80"), quote("70"))
    tracker.apply(engine.on_market(bar("90", "91", "85", "88"), now=at(60)))
    assert tracker[sell.id].average_price == D(90) * D("0.999")
    assert tracker[buy.id].average_price == D(90) * D("1.001")


def test_sim_stop_market_with_a_book_walks_the_book_and_cancels_what_it_cannot_fill() -> None:
    engine, tracker = exchange(), Tracker()
    o = tracker.submit(engine, order("buy", "stop_market", "1", stop="105"), quote("100"))
    depth = book(asks=[("106", "0.5")])
    updates = tracker.apply(engine.on_market(quote("105", book=depth), now=at(1)))
    assert kinds(updates) == ["Triggered", "Filled", "Canceled"]
    done = tracker[o.id]
    assert (done.status, done.filled_quantity, done.average_price) == (OrderStatus.CANCELED, D("0.5"), D(106))
    assert engine.open_orders() == []


def test_sim_stop_limit_marketable_at_the_trigger_fills_as_a_taker_capped_at_the_limit() -> None:
    engine, tracker = exchange(FillRules(slippage_bps=Decimal(100))), Tracker()
    o = tracker.submit(engine, order("sell", "stop_limit", stop="95", price="94.5"), quote("100"))
    tracker.apply(engine.on_market(bar("100", "100", "90", "91"), now=at(60)))
    done = tracker[o.id]
    assert done.status is OrderStatus.FILLED
    assert done.average_price == D("94.5")  # 95 * 0.99 = 94.05 would be worse than the limit
    assert done.triggered


def test_sim_stop_limit_triggered_inside_a_bar_and_not_marketable_rests_from_the_next_bar() -> None:
    engine, tracker = exchange(), Tracker()
    # A sell stop-limit whose limit is above its stop: at the trigger (95) it cannot sell at 96.
    o = tracker.submit(engine, order("sell", "stop_limit", stop="95", price="96"), quote("100"))
    updates = tracker.apply(engine.on_market(bar("97", "99", "94", "98"), now=at(60)))
    assert kinds(updates) == ["Triggered"]
    rested = tracker[o.id]
    assert (rested.status, rested.triggered) == (OrderStatus.NEW, True)
    assert engine.open_orders()[0].triggered
    tracker.apply(engine.on_market(bar("98", "99", "97", "98"), now=at(120)))
    done = tracker[o.id]
    assert done.status is OrderStatus.FILLED
    assert done.average_price == D(98)  # the next bar opened above the sell limit: the open
    assert fills(updates) == []


def test_sim_stop_limit_triggered_at_the_open_can_fill_later_in_the_same_bar() -> None:
    engine, tracker = exchange(), Tracker()
    o = tracker.submit(engine, order("sell", "stop_limit", stop="95", price="94"), quote("100"))
    # Opens at 93 (through the stop and below the limit), then rallies to 96: fills at 94 as maker.
    updates = tracker.apply(engine.on_market(bar("93", "96", "92", "95"), now=at(60)))
    assert kinds(updates) == ["Triggered", "Filled"]
    (maker,) = fills(updates)
    assert (maker.fill.price, maker.fill.liquidity) == (D(94), Liquidity.MAKER)
    assert tracker[o.id].status is OrderStatus.FILLED


def test_sim_stop_limit_gapped_past_its_limit_without_recovery_keeps_resting() -> None:
    engine, tracker = exchange(), Tracker()
    o = tracker.submit(engine, order("sell", "stop_limit", stop="95", price="94"), quote("100"))
    tracker.apply(engine.on_market(bar("90", "93", "89", "91"), now=at(60)))
    assert tracker[o.id].status is OrderStatus.NEW
    assert tracker[o.id].triggered


def test_sim_stop_limit_ioc_and_fok_end_at_the_trigger_when_not_marketable() -> None:
    engine, tracker = exchange(), Tracker()
    ioc = tracker.submit(engine, order("buy", "stop_limit", stop="105", price="104", tif="IOC"), quote("100"))
    fok = tracker.submit(engine, order("buy", "stop_limit", stop="105", price="104", tif="FOK"), quote("100"))
    tracker.apply(engine.on_market(quote("106"), now=at(1)))
    assert tracker[ioc.id].status is OrderStatus.CANCELED
    assert tracker[fok.id].status is OrderStatus.EXPIRED
    assert engine.open_orders() == []


def test_sim_stop_limit_on_a_quote_rests_when_the_quote_is_beyond_the_limit() -> None:
    engine, tracker = exchange(), Tracker()
    o = tracker.submit(engine, order("buy", "stop_limit", stop="105", price="106"), quote("100"))
    tracker.apply(engine.on_market(quote("107", ask="107.5"), now=at(1)))
    assert (tracker[o.id].status, tracker[o.id].triggered) == (OrderStatus.NEW, True)
    tracker.apply(engine.on_market(quote("105.5", ask="105.8"), now=at(2)))
    assert tracker[o.id].average_price == D(106)


def test_sim_stops_trigger_in_arrival_order() -> None:
    engine, tracker = exchange(), Tracker()
    a = tracker.submit(engine, order("sell", "stop_market", stop="90"), quote("100"))
    b = tracker.submit(engine, order("sell", "stop_market", stop="95"), quote("100"))
    updates = tracker.apply(engine.on_market(bar("100", "100", "85", "86"), now=at(60)))
    assert [f.fill.order_id for f in fills(updates)] == [a.id, b.id]
