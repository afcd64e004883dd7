"""Acceptance and rejection (M2), cancel, restore after a restart, open orders."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from cryptoorchestrator.core.errors import Conflict, NotFound, ValidationFailed
from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.orders import Canceled, OrderStatus, Rejected
from cryptoorchestrator.simulator.market_state import Bar, MarketState
from cryptoorchestrator.simulator.matching import PaperExchange

from ._sim_support import BTC, NO_SLIPPAGE, SYMBOL, T0, D, Tracker, at, bar, exchange, kinds, order, quote


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"quantity": "0"}, "quantity must be"),
        ({"quantity": "0.0015"}, "step"),
        ({"type_": "limit"}, "price must be"),
        ({"type_": "limit", "price": "-1"}, "price must be"),
        ({"type_": "limit", "price": "100.005"}, "tick"),
        ({"type_": "stop_market"}, "stop_price must be"),
        ({"type_": "stop_limit", "stop": "101"}, "price must be"),
        ({"type_": "stop_limit", "price": "101"}, "stop_price must be"),
        ({"type_": "stop_market", "stop": "101.001"}, "tick"),
    ],
)
def test_sim_invalid_orders_are_rejected_without_acceptance(kwargs: dict[str, str], words: str) -> None:
    engine, tracker = exchange(), Tracker()
    o = order(**kwargs)  # type: ignore[arg-type]
    tracker.track(o)
    updates = tracker.apply(engine.submit(o, instrument=BTC, market=quote("100"), now=T0))
    assert kinds(updates) == ["Rejected"]
    event = updates[0].event
    assert isinstance(event, Rejected)
    assert words in event.reason
    assert tracker[o.id].status is OrderStatus.REJECTED
    assert engine.open_orders() == []


@pytest.mark.parametrize(
    ("kwargs", "accepted"),
    [
        ({"quantity": "0.005"}, False),  # below the minimum quantity
        ({"quantity": "0.09"}, False),  # 0.09 * 100 (the touch) = 9 < 10
        ({"quantity": "0.1"}, True),
        ({"type_": "limit", "quantity": "0.05", "price": "150"}, False),  # 7.5 at the limit
        ({"type_": "limit", "quantity": "0.1", "price": "150"}, True),
        ({"type_": "stop_market", "quantity": "0.1", "stop": "90"}, False),  # 9 at the stop
        ({"type_": "stop_limit", "quantity": "0.1", "stop": "90", "price": "110"}, True),  # 11 at the limit
    ],
)
def test_sim_minimums_are_checked_at_the_price_the_order_names(
    kwargs: dict[str, str], accepted: bool
) -> None:
    strict = replace(BTC, min_quantity=D("0.01"), min_notional=D("10"))
    updates = exchange().submit(order(**kwargs), instrument=strict, market=quote("100"), now=T0)  # type: ignore[arg-type]
    assert isinstance(updates[0].event, Rejected) is not accepted
    if not accepted:
        assert isinstance(updates[0].event, Rejected)
        assert "minimum" in updates[0].event.reason


def test_sim_submit_refuses_non_pending_orders_wrong_symbols_and_duplicates() -> None:
    engine = exchange()
    with pytest.raises(ValidationFailed):
        engine.submit(replace(order(), status=OrderStatus.NEW), instrument=BTC, market=quote("100"), now=T0)
    with pytest.raises(ValidationFailed):
        engine.submit(order(), instrument=BTC, market=quote("100", symbol="ETH/USDT"), now=T0)
    with pytest.raises(ValidationFailed):
        engine.submit(order(symbol="ETH/USDT"), instrument=BTC, market=quote("100"), now=T0)
    resting = order("buy", "limit", price="90", order_id="dup")
    engine.submit(resting, instrument=BTC, market=quote("100"), now=T0)
    with pytest.raises(Conflict):
        engine.submit(resting, instrument=BTC, market=quote("100"), now=T0)


def test_sim_cancel_removes_a_resting_order_and_unknown_ids_raise_not_found() -> None:
    engine, tracker = exchange(), Tracker()
    o = tracker.submit(engine, order("buy", "limit", price="90"), quote("100"))
    updates = tracker.apply(engine.cancel(o.id, now=at(5)))
    assert kinds(updates) == ["Canceled"]
    assert isinstance(updates[0].event, Canceled)
    assert tracker[o.id].status is OrderStatus.CANCELED
    assert tracker[o.id].updated_at == at(5)
    assert engine.open_orders() == []
    assert engine.on_market(quote("80"), now=at(6)) == []
    with pytest.raises(NotFound):
        engine.cancel(o.id, now=at(7))
    with pytest.raises(NotFound):
        engine.cancel("never-seen", now=at(7))


def test_sim_open_orders_filters_by_symbol_in_arrival_order() -> None:
    eth = Instrument(symbol="ETH/USDT", base="ETH", quote="USDT")
    engine = exchange()
    a = order("buy", "limit", price="90")
    b = order("buy", "limit", price="10", symbol="ETH/USDT")
    c = order("sell", "stop_market", stop="80")
    engine.submit(a, instrument=BTC, market=quote("100"), now=T0)
    engine.submit(b, instrument=eth, market=quote("20", symbol="ETH/USDT"), now=T0)
    engine.submit(c, instrument=BTC, market=quote("100"), now=T0)
    assert [o.id for o in engine.open_orders()] == [a.id, b.id, c.id]
    assert [o.id for o in engine.open_orders(SYMBOL)] == [a.id, c.id]
    assert [o.id for o in engine.open_orders("ETH/USDT")] == [b.id]


def test_sim_restore_rebuilds_the_book_and_continues_the_ids() -> None:
    first, tracker = exchange(), Tracker()
    limit = tracker.submit(first, order("buy", "limit", "1", price="95"), quote("100"))
    stop = tracker.submit(first, order("sell", "stop_market", stop="90", oco="g"), quote("100"))
    tp = tracker.submit(first, order("sell", "limit", price="120", oco="g"), quote("100"))
    filled = tracker.submit(first, order("buy", "market"), quote("100"))
    # As the database hands them back: any order; created_at says which is oldest.
    persisted = [replace(tracker[o.id], created_at=at(i)) for i, o in enumerate((limit, stop, tp, filled))]
    persisted.reverse()

    second = exchange()  # a restart: same prefix, fresh counter
    second.restore(persisted, instruments={SYMBOL: BTC})
    assert [o.id for o in second.open_orders()] == [limit.id, stop.id, tp.id]  # oldest first
    fresh = tracker.submit(second, order("buy", "market"), quote("100"))
    assert fresh.exchange_order_id == "paper-5"  # past the restored paper-1..paper-4
    updates = tracker.apply(second.on_market(bar("100", "100", "89", "92"), now=at(60)))
    assert tracker[limit.id].status is OrderStatus.FILLED
    assert tracker[stop.id].status is OrderStatus.FILLED
    assert tracker[tp.id].status is OrderStatus.CANCELED  # OCO survives the restart
    assert kinds(updates) == ["Triggered", "Filled", "Canceled", "Filled"]
    assert second.open_orders() == []


def test_sim_restore_keeps_partial_fills_and_trade_ids_stay_unique() -> None:
    first, tracker = exchange(), Tracker()
    from ._sim_support import book

    partial = tracker.submit(
        first,
        order("buy", "limit", "1", price="101", oco="g"),
        quote("100", book=book(asks=[("100", "0.25")])),
    )
    assert partial.status is OrderStatus.PARTIALLY_FILLED
    second = exchange()
    second.restore([partial], instruments={SYMBOL: BTC})
    (restored,) = second.open_orders()
    assert restored.remaining == D("0.75")
    tracker.apply(second.on_market(quote("100.5", ask="100.9"), now=at(1)))
    done = tracker[partial.id]
    assert done.status is OrderStatus.FILLED
    assert done.trade_ids == {"paper-1-1", "paper-1-2"}
    # The group was spent by the partial fill before the restart.
    late = tracker.submit(second, order("sell", "limit", price="130", oco="g"), quote("100"))
    assert late.status is OrderStatus.CANCELED


def test_sim_restore_of_a_triggered_stop_limit_rests_as_a_limit() -> None:
    first, tracker = exchange(), Tracker()
    o = tracker.submit(first, order("sell", "stop_limit", stop="95", price="96"), quote("100"))
    tracker.apply(first.on_market(quote("94.5"), now=at(1)))
    assert (tracker[o.id].triggered, tracker[o.id].status) == (True, OrderStatus.NEW)
    second = exchange()
    second.restore([tracker[o.id]], instruments={SYMBOL: BTC})
    tracker.apply(second.on_market(quote("96.5", bid="96.2"), now=at(2)))
    assert tracker[o.id].average_price == D(96)


def test_sim_restore_refuses_what_it_cannot_rest_and_restores_nothing_then() -> None:
    engine = exchange()
    good = replace(order("buy", "limit", price="90"), status=OrderStatus.NEW, exchange_order_id="paper-1")
    for bad in (
        order("buy", "limit", price="90"),  # pending: never accepted
        replace(order(), status=OrderStatus.NEW, exchange_order_id="paper-2"),  # market
        replace(
            order(symbol="ETH/USDT", type_="limit", price="9"), status=OrderStatus.NEW, exchange_order_id="x"
        ),
    ):
        with pytest.raises(ValidationFailed):
            engine.restore([good, bad], instruments={SYMBOL: BTC})
        assert engine.open_orders() == []
    engine.restore([good, replace(order(), status=OrderStatus.FILLED)], instruments={SYMBOL: BTC})
    assert [o.id for o in engine.open_orders()] == [good.id]
    with pytest.raises(Conflict):
        engine.restore([good], instruments={SYMBOL: BTC})


def test_sim_market_state_and_bar_validate_their_numbers() -> None:
    with pytest.raises(ValidationFailed):
        MarketState(symbol=SYMBOL, last=Decimal(0), timestamp=T0)
    with pytest.raises(ValidationFailed):
        MarketState(symbol=SYMBOL, last=D(1), timestamp=T0, ask=D(-1))
    with pytest.raises(ValidationFailed):
        MarketState(symbol=SYMBOL, last=D(1), timestamp=T0, bar_volume=D(-1))
    with pytest.raises(ValidationFailed):
        Bar(symbol=SYMBOL, open=D(10), high=D(9), low=D(8), close=D(9), volume=D(1), timestamp=T0)
    with pytest.raises(ValidationFailed):
        Bar(symbol=SYMBOL, open=D(10), high=D(11), low=D(8), close=D(9), volume=D(-1), timestamp=T0)
    state = MarketState(symbol=SYMBOL, last=D(100), timestamp=T0, bid=D(99))
    assert (state.best_bid, state.best_ask) == (D(99), D(100))


def test_sim_the_rules_default_to_the_fill_model_defaults() -> None:
    assert PaperExchange().rules.slippage_bps == D(5)
    assert exchange().rules is NO_SLIPPAGE
