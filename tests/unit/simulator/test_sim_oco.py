"""One-cancels-other (M8) and the stop-loss-wins rule of one bar (M7, kernel R5)."""

from __future__ import annotations

from cryptoorchestrator.domain.orders import Canceled, Order, OrderStatus
from cryptoorchestrator.simulator.matching import OCO_REASON, OrderUpdate, PaperExchange

from ._sim_support import D, Tracker, at, bar, book, exchange, fills, order, quote


def _bracket(tracker: Tracker, engine: PaperExchange, group: str = "g1") -> tuple[Order, Order]:
    """The children of a filled long entry at 100: stop loss at 95, take profit at 110."""
    sl = tracker.submit(engine, order("sell", "stop_market", stop="95", oco=group), quote("100"))
    tp = tracker.submit(engine, order("sell", "limit", price="110", oco=group), quote("100"))
    return sl, tp


def _cancel_reason(updates: list[OrderUpdate], order_id: str) -> str | None:
    (event,) = [e for oid, e in updates if oid == order_id and isinstance(e, Canceled)]
    return event.reason


def test_sim_take_profit_fill_cancels_the_stop_loss() -> None:
    engine, tracker = exchange(), Tracker()
    sl, tp = _bracket(tracker, engine)
    updates = tracker.apply(engine.on_market(quote("111", bid="110.5"), now=at(1)))
    assert tracker[tp.id].status is OrderStatus.FILLED
    assert tracker[sl.id].status is OrderStatus.CANCELED
    assert _cancel_reason(updates, sl.id) == OCO_REASON
    assert tracker[sl.id].reason == OCO_REASON
    assert engine.open_orders() == []


def test_sim_stop_loss_fill_cancels_the_take_profit() -> None:
    engine, tracker = exchange(), Tracker()
    sl, tp = _bracket(tracker, engine)
    updates = tracker.apply(engine.on_market(bar("100", "101", "94", "96"), now=at(60)))
    assert tracker[sl.id].status is OrderStatus.FILLED
    assert _cancel_reason(updates, tp.id) == OCO_REASON
    assert engine.open_orders() == []


def test_sim_stop_loss_wins_when_both_are_inside_one_bar() -> None:
    engine, tracker = exchange(), Tracker()
    sl, tp = _bracket(tracker, engine)
    updates = tracker.apply(engine.on_market(bar("100", "111", "90", "100"), now=at(60)))
    assert tracker[sl.id].status is OrderStatus.FILLED
    assert tracker[sl.id].average_price == D(95)
    assert tracker[tp.id].status is OrderStatus.CANCELED
    assert [f.fill.order_id for f in fills(updates)] == [sl.id]


def test_sim_stop_loss_wins_even_when_the_take_profit_arrived_first() -> None:
    engine, tracker = exchange(), Tracker()
    tp = tracker.submit(engine, order("sell", "limit", price="110", oco="g"), quote("100"))
    sl = tracker.submit(engine, order("sell", "stop_market", stop="95", oco="g"), quote("100"))
    tracker.apply(engine.on_market(bar("100", "111", "90", "100"), now=at(60)))
    assert (tracker[sl.id].status, tracker[tp.id].status) == (OrderStatus.FILLED, OrderStatus.CANCELED)


def test_sim_stop_limit_loss_wins_over_a_take_profit_in_the_same_bar() -> None:
    engine, tracker = exchange(), Tracker()
    tp = tracker.submit(engine, order("sell", "limit", price="110", oco="g"), quote("100"))
    sl = tracker.submit(engine, order("sell", "stop_limit", stop="95", price="94", oco="g"), quote("100"))
    # Gaps below the limit at the open (the stop-limit rests at 94), then rallies through both.
    tracker.apply(engine.on_market(bar("93", "111", "92", "100"), now=at(60)))
    assert (tracker[sl.id].status, tracker[tp.id].status) == (OrderStatus.FILLED, OrderStatus.CANCELED)
    assert tracker[sl.id].average_price == D(94)


def test_sim_take_profit_wins_when_the_bar_opened_through_it() -> None:
    engine, tracker = exchange(), Tracker()
    sl, tp = _bracket(tracker, engine)
    tracker.apply(engine.on_market(bar("112", "113", "90", "100"), now=at(60)))
    assert tracker[tp.id].status is OrderStatus.FILLED
    assert tracker[tp.id].average_price == D(112)
    assert tracker[sl.id].status is OrderStatus.CANCELED


def test_sim_stop_loss_gap_at_the_open_fills_at_the_open() -> None:
    engine, tracker = exchange(), Tracker()
    sl, tp = _bracket(tracker, engine)
    tracker.apply(engine.on_market(bar("90", "111", "89", "100"), now=at(60)))
    assert tracker[sl.id].average_price == D(90)
    assert tracker[tp.id].status is OrderStatus.CANCELED


def test_sim_partial_fill_cancels_the_siblings_and_the_partly_filled_order_keeps_resting() -> None:
    engine, tracker = exchange(), Tracker()
    resting = tracker.submit(engine, order("buy", "limit", "1", price="90", oco="g"), quote("100"))
    taker = tracker.submit(
        engine,
        order("sell", "limit", "1", price="100", oco="g"),
        quote("100", book=book(bids=[("101", "0.4")])),
    )
    assert taker.status is OrderStatus.PARTIALLY_FILLED
    assert tracker[resting.id].status is OrderStatus.CANCELED
    assert [o.id for o in engine.open_orders()] == [taker.id]


def test_sim_order_submitted_into_a_spent_group_is_canceled_at_once() -> None:
    engine, tracker = exchange(), Tracker()
    # The stop loss is already through on arrival and fills; the take profit comes next.
    sl = tracker.submit(engine, order("sell", "stop_market", stop="95", oco="g"), quote("94"))
    tp = tracker.submit(engine, order("sell", "limit", price="110", oco="g"), quote("94"))
    assert sl.status is OrderStatus.FILLED
    assert tp.status is OrderStatus.CANCELED
    assert tp.reason == OCO_REASON
    assert tp.exchange_order_id is not None  # accepted first, then canceled
    assert engine.open_orders() == []


def test_sim_groups_are_independent_and_user_cancel_does_not_cascade() -> None:
    engine, tracker = exchange(), Tracker()
    sl1, tp1 = _bracket(tracker, engine, "g1")
    sl2, tp2 = _bracket(tracker, engine, "g2")
    tracker.apply(engine.cancel(sl1.id, now=at(1)))
    assert tracker[sl1.id].status is OrderStatus.CANCELED
    assert tracker[tp1.id].status is OrderStatus.NEW
    tracker.apply(engine.on_market(quote("111"), now=at(2)))
    assert {tracker[i].status for i in (tp1.id, tp2.id)} == {OrderStatus.FILLED}
    assert tracker[sl2.id].status is OrderStatus.CANCELED
    assert engine.open_orders() == []
