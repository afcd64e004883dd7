"""The price-ordered queues behind the resting book: what a price pops, lazy removal, compaction."""

from __future__ import annotations

from decimal import Decimal

from cryptoorchestrator.domain.orders import OrderSide, OrderStatus
from cryptoorchestrator.simulator._resting import PriceQueue, SymbolBook

from ._sim_support import Tracker, at, bar, exchange, order, quote


def test_sim_queue_pops_every_live_entry_through_the_bound_in_key_then_arrival_order() -> None:
    q = PriceQueue()
    for seq, (key, order_id) in enumerate([(5, "a"), (3, "b"), (5, "c"), (9, "d"), (3, "e")]):
        q.push(Decimal(key), seq, order_id)
    q.discard("e")
    assert q.pop_through(Decimal(5)) == [(1, "b"), (0, "a"), (2, "c")]
    assert len(q) == 1
    assert q.pop_through(Decimal(8)) == []
    assert q.pop_through(Decimal(9)) == [(3, "d")]


def test_sim_queue_does_not_revive_a_discarded_entry_when_the_id_comes_back() -> None:
    q = PriceQueue()
    q.push(Decimal(1), 0, "x")
    q.discard("x")
    q.push(Decimal(7), 5, "x")
    assert q.pop_through(Decimal(1)) == []
    assert q.pop_through(Decimal(7)) == [(5, "x")]


def test_sim_queue_compacts_when_dead_entries_outnumber_live_ones() -> None:
    q = PriceQueue()
    for i in range(1000):
        q.push(Decimal(i), i, f"o{i}")
    for i in range(990):
        q.discard(f"o{i}")
    assert len(q) == 10
    assert len(q._heap) < 200  # a peek inside: churn must not keep every dead entry
    assert [order_id for _, order_id in q.pop_through(Decimal(10_000))] == [f"o{i}" for i in range(990, 1000)]


def test_sim_symbol_book_pops_limits_and_stops_by_side() -> None:
    book = SymbolBook()
    book.add_limit("bl", 0, OrderSide.BUY, Decimal(95))
    book.add_limit("sl", 1, OrderSide.SELL, Decimal(105))
    book.add_stop("bs", 2, OrderSide.BUY, Decimal(110))
    book.add_stop("ss", 3, OrderSide.SELL, Decimal(90))
    assert len(book) == 4
    assert book.pop_limits(lowest=Decimal(96), highest=Decimal(104)) == []
    assert book.pop_stops(lowest=Decimal(91), highest=Decimal(109)) == []
    assert book.pop_limits(lowest=Decimal(95), highest=Decimal(105)) == [(0, "bl"), (1, "sl")]
    assert book.pop_stops(lowest=Decimal(90), highest=Decimal(110)) == [(2, "bs"), (3, "ss")]
    assert len(book) == 0


def test_sim_many_cancels_then_a_sweep_fills_only_the_live_orders() -> None:
    engine, tracker = exchange(), Tracker()
    placed = [
        tracker.submit(engine, order("buy", "limit", price=str(90 + i % 9)), quote("100")) for i in range(300)
    ]
    for o in placed[:250]:
        tracker.apply(engine.cancel(o.id, now=at(1)))
    tracker.apply(engine.on_market(bar("100", "100", "80", "85"), now=at(2)))
    assert {tracker[o.id].status for o in placed[:250]} == {OrderStatus.CANCELED}
    assert {tracker[o.id].status for o in placed[250:]} == {OrderStatus.FILLED}
    assert engine.open_orders() == []
