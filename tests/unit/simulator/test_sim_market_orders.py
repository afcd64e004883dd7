"""Market orders on the paper exchange: the touch, slippage, fees, book walking, IOC/FOK (M1-M4)."""

from __future__ import annotations

from decimal import Decimal

from cryptoorchestrator.domain.orders import (
    Accepted,
    Canceled,
    Expired,
    Filled,
    Liquidity,
    OrderSide,
    OrderStatus,
)
from cryptoorchestrator.simulator.fill_model import SLIPPAGE_VOLUME, FillRules
from cryptoorchestrator.simulator.matching import FOK_REASON, NO_LIQUIDITY_REASON, PaperExchange

from ._sim_support import BTC, T0, D, Tracker, book, exchange, fills, kinds, order, quote


def test_sim_market_buy_fills_at_the_ask_with_the_taker_fee_in_the_quote_asset() -> None:
    engine, tracker = exchange(), Tracker()
    o = order("buy", "market", "0.5")
    updates = engine.submit(o, instrument=BTC, market=quote("100", bid="99", ask="101"), now=o.created_at)
    tracker.track(o)
    tracker.apply(updates)
    assert kinds(updates) == ["Accepted", "Filled"]
    accepted = updates[0].event
    assert isinstance(accepted, Accepted)
    assert accepted.exchange_order_id == "paper-1"
    (filled,) = fills(updates)
    fill = filled.fill
    assert fill.price == D("101")
    assert fill.quantity == D("0.5")
    assert fill.liquidity is Liquidity.TAKER
    assert fill.fee == D("101") * D("0.5") * BTC.taker_fee
    assert fill.fee_asset == "USDT"
    assert fill.trade_id == "paper-1-1"
    done = tracker[o.id]
    assert done.status is OrderStatus.FILLED
    assert done.exchange_order_id == "paper-1"
    assert engine.open_orders() == []


def test_sim_market_sell_fills_at_the_bid_and_falls_back_to_last() -> None:
    engine, tracker = exchange(), Tracker()
    assert (
        tracker.submit(engine, order("sell", "market"), quote("100", bid="99", ask="101")).average_price == 99
    )
    assert tracker.submit(engine, order("sell", "market"), quote("100")).average_price == 100
    assert tracker.submit(engine, order("buy", "market"), quote("100")).average_price == 100


def test_sim_market_slippage_moves_the_price_against_the_taker() -> None:
    engine, tracker = exchange(FillRules(slippage_bps=Decimal(10))), Tracker()
    buy = tracker.submit(engine, order("buy", "market"), quote("100", bid="99", ask="101"))
    sell = tracker.submit(engine, order("sell", "market"), quote("100", bid="99", ask="101"))
    assert buy.average_price == D("101") * D("1.001")
    assert sell.average_price == D("99") * D("0.999")


def test_sim_market_volume_impact_uses_the_bar_volume_and_the_cap_when_unknown() -> None:
    rules = FillRules(
        slippage_model=SLIPPAGE_VOLUME, slippage_bps=D(1), impact_k_bps=D(10), impact_cap_bps=D(50)
    )
    engine, tracker = exchange(rules), Tracker()
    known = tracker.submit(engine, order("buy", "market", "4"), quote("100", volume="100"))
    # 1 bps + 10 * sqrt(4 / 100) = 3 bps
    assert known.average_price == D("100") * (1 + D(3) / 10_000)
    unknown = tracker.submit(engine, order("buy", "market", "4"), quote("100"))
    assert unknown.average_price == D("100") * (1 + D(51) / 10_000)


def test_sim_market_order_walks_the_book_level_by_level() -> None:
    engine, tracker = exchange(FillRules(slippage_bps=Decimal(10))), Tracker()
    depth = book(asks=[("101", "0.4"), ("102", "0.5"), ("105", "10")])
    o = order("buy", "market", "1.2")
    tracker.track(o)
    updates = tracker.apply(
        engine.submit(o, instrument=BTC, market=quote("100", book=depth), now=o.created_at)
    )
    got = [(f.fill.price, f.fill.quantity) for f in fills(updates)]
    slip = D("1.001")
    assert got == [(D(101) * slip, D("0.4")), (D(102) * slip, D("0.5")), (D(105) * slip, D("0.3"))]
    assert [f.fill.trade_id for f in fills(updates)] == ["paper-1-1", "paper-1-2", "paper-1-3"]
    done = tracker[o.id]
    assert done.status is OrderStatus.FILLED
    assert done.fees["USDT"] == sum((p * q * BTC.taker_fee for p, q in got), Decimal(0))


def test_sim_market_sell_walks_the_bids() -> None:
    engine, tracker = exchange(), Tracker()
    depth = book(bids=[("99", "1"), ("98", "1")], asks=[("101", "1")])
    done = tracker.submit(engine, order("sell", "market", "1.5"), quote("100", book=depth))
    assert done.average_price == (D(99) + D(98) * D("0.5")) / D("1.5")


def test_sim_market_thin_book_fills_partly_and_cancels_the_rest() -> None:
    engine, tracker = exchange(), Tracker()
    o = order("buy", "market", "2")
    tracker.track(o)
    updates = tracker.apply(
        engine.submit(
            o, instrument=BTC, market=quote("100", book=book(asks=[("101", "0.75")])), now=o.created_at
        )
    )
    assert kinds(updates) == ["Accepted", "Filled", "Canceled"]
    canceled = updates[-1].event
    assert isinstance(canceled, Canceled)
    assert canceled.reason == NO_LIQUIDITY_REASON
    done = tracker[o.id]
    assert done.status is OrderStatus.CANCELED
    assert done.filled_quantity == D("0.75")
    assert engine.open_orders() == []


def test_sim_market_level_sizes_are_rounded_down_to_the_step() -> None:
    engine, tracker = exchange(), Tracker()
    depth = book(asks=[("101", "0.0004"), ("102", "0.5557"), ("103", "5")])
    o = order("buy", "market", "1")
    tracker.track(o)
    updates = tracker.apply(
        engine.submit(o, instrument=BTC, market=quote("100", book=depth), now=o.created_at)
    )
    assert [f.fill.quantity for f in fills(updates)] == [D("0.555"), D("0.445")]
    assert all(f.fill.quantity % BTC.quantity_step == 0 for f in fills(updates))


def test_sim_market_empty_book_side_cancels_without_fills() -> None:
    engine, tracker = exchange(), Tracker()
    done = tracker.submit(engine, order("buy", "market"), quote("100", book=book(bids=[("99", "5")])))
    assert done.status is OrderStatus.CANCELED
    assert done.filled_quantity == 0


def test_sim_market_fok_expires_whole_when_the_book_is_thin_and_fills_when_deep() -> None:
    engine, tracker = exchange(), Tracker()
    thin = quote("100", book=book(asks=[("101", "0.5"), ("102", "0.4")]))
    o = order("buy", "market", "1", tif="FOK")
    tracker.track(o)
    updates = tracker.apply(engine.submit(o, instrument=BTC, market=thin, now=o.created_at))
    assert kinds(updates) == ["Accepted", "Expired"]
    expired = updates[-1].event
    assert isinstance(expired, Expired)
    assert expired.reason == FOK_REASON
    assert tracker[o.id].filled_quantity == 0
    done = tracker.submit(engine, order("buy", "market", "0.9", tif="FOK"), thin)
    assert done.status is OrderStatus.FILLED


def test_sim_market_ids_count_up_and_trade_ids_follow_the_order() -> None:
    engine, tracker = exchange(), Tracker()
    first = tracker.submit(engine, order("buy", "market"), quote("100"))
    second = tracker.submit(engine, order("sell", "market"), quote("100"))
    assert (first.exchange_order_id, second.exchange_order_id) == ("paper-1", "paper-2")
    assert first.trade_ids == {"paper-1-1"}
    assert second.trade_ids == {"paper-2-1"}


def test_sim_default_prefix_differs_between_engines() -> None:
    # After a restart a new engine must not hand out the exchange (and so trade) ids of the old one.
    ids = []
    for engine in (PaperExchange(), PaperExchange()):
        (accepted, _) = engine.submit(order(), instrument=BTC, market=quote("100"), now=T0)
        assert isinstance(accepted.event, Accepted)
        ids.append(accepted.event.exchange_order_id or "")
    assert ids[0] != ids[1]
    assert all(i.startswith("paper-") and i.endswith("-1") for i in ids)


def test_sim_fills_carry_the_order_side_symbol_and_time() -> None:
    engine = exchange()
    o = order("sell", "market", "0.25")
    (_, filled) = engine.submit(o, instrument=BTC, market=quote("100"), now=o.created_at)
    assert isinstance(filled.event, Filled)
    fill = filled.event.fill
    assert (fill.side, fill.symbol, fill.order_id, fill.timestamp) == (
        OrderSide.SELL,
        "BTC/USDT",
        o.id,
        o.created_at,
    )
