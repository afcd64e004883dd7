"""The order state machine (``domain/orders.py``): property tests on random event sequences and
one example per rule of the module docstring."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptoorchestrator.domain.orders import (
    Accepted,
    Canceled,
    Expired,
    Filled,
    Order,
    OrderEvent,
    OrderSide,
    OrderStatus,
    OrderType,
    OutcomeUnknown,
    Rejected,
    Triggered,
    apply_event,
    apply_events,
)

from ._factories import D, at, make_fill, make_order

PROPERTY = settings(max_examples=200, deadline=None)

# --- strategies -------------------------------------------------------------------------------

# Quantities and prices on a grid, as venues send them (steps of 0.01 and 0.5).
quantities = st.integers(min_value=1, max_value=400).map(lambda units: Decimal(units).scaleb(-2))
prices = st.integers(min_value=1, max_value=4000).map(lambda units: Decimal(units) / 2)
times = st.integers(min_value=0, max_value=3600).map(at)
# A small pool of trade ids, so that duplicates (the same report twice) are common.
trade_ids = st.sampled_from([f"t{index}" for index in range(8)])


@st.composite
def fills(draw: st.DrawFn, trade_id: st.SearchStrategy[str] = trade_ids) -> Filled:
    side = draw(st.sampled_from(OrderSide))
    return Filled(
        make_fill(
            side,
            draw(quantities),
            draw(prices),
            fee=draw(st.sampled_from(["0", "0.01", "0.5"])),
            fee_asset=draw(st.sampled_from(["USDT", "BTC", "BNB"])),
            trade_id=draw(trade_id),
            seconds=draw(st.integers(0, 3600)),
        )
    )


events: st.SearchStrategy[OrderEvent] = st.one_of(
    st.builds(Accepted, exchange_order_id=st.sampled_from([None, "x1", "x2"]), timestamp=times),
    fills(),
    fills(),  # fills are the interesting events: weigh them up
    st.builds(Canceled, timestamp=times, reason=st.sampled_from([None, "user"])),
    st.builds(Rejected, timestamp=times, reason=st.just("insufficient margin")),
    st.builds(Expired, timestamp=times, reason=st.sampled_from([None, "ioc"])),
    st.builds(OutcomeUnknown, timestamp=times, reason=st.just("timeout")),
    st.builds(Triggered, timestamp=times),
)


@st.composite
def orders(draw: st.DrawFn) -> Order:
    return make_order(
        draw(quantities),
        side=draw(st.sampled_from(OrderSide)),
        type=draw(st.sampled_from(OrderType)),
    )


def check_consistent(order: Order) -> None:
    """The status agrees with the filled quantity (rules 3, 4, 6, 7)."""
    assert 0 <= order.filled_quantity <= order.quantity
    status = order.status
    if status is OrderStatus.FILLED:
        assert order.filled_quantity == order.quantity
    elif status is OrderStatus.PARTIALLY_FILLED:
        assert 0 < order.filled_quantity < order.quantity
    elif status in (OrderStatus.CANCELED, OrderStatus.EXPIRED):
        assert order.filled_quantity < order.quantity  # possibly partly filled
    else:  # pending, new, unknown, rejected: nothing filled yet
        assert order.filled_quantity == 0
    if status is OrderStatus.REJECTED:
        assert not order.trade_ids and order.average_price is None and not order.fees
    assert (order.average_price is None) == (order.filled_quantity == 0)


# --- properties -------------------------------------------------------------------------------


@PROPERTY
@given(order=orders(), sequence=st.lists(events, max_size=30))
def test_every_step_keeps_the_rules(order: Order, sequence: list[OrderEvent]) -> None:
    check_consistent(order)
    for event in sequence:
        after = apply_event(order, event)
        # Filled quantity never decreases and never passes the order quantity (rule 3).
        assert order.filled_quantity <= after.filled_quantity <= after.quantity
        # updated_at never goes back, whatever order the venue's messages arrive in.
        assert after.updated_at >= order.updated_at
        if order.is_terminal:
            assert after is order  # rule 1
        if isinstance(event, Filled) and event.fill.trade_id in order.trade_ids:
            assert after is order  # rule 2
        if after.status is OrderStatus.UNKNOWN and order.status is not OrderStatus.UNKNOWN:
            assert order.status is OrderStatus.PENDING and isinstance(event, OutcomeUnknown)  # rule 8
        if after.status is OrderStatus.REJECTED and order.status is not OrderStatus.REJECTED:
            assert order.filled_quantity == 0  # rule 7
        # The identity of the order never changes.
        assert (after.id, after.quantity, after.side, after.type) == (
            order.id,
            order.quantity,
            order.side,
            order.type,
        )
        check_consistent(after)
        order = after


@PROPERTY
@given(order=orders(), sequence=st.lists(events, max_size=30))
def test_replaying_a_sequence_twice_changes_nothing_more_for_fills(
    order: Order, sequence: list[OrderEvent]
) -> None:
    """Every fill report delivered twice (a reconnect replays the stream) gives the same fills."""
    once = apply_events(order, sequence)
    fills_again: list[OrderEvent] = [event for event in sequence if isinstance(event, Filled)]
    twice = apply_events(once, fills_again)
    assert twice.filled_quantity == once.filled_quantity
    assert twice.fees == once.fees and twice.trade_ids == once.trade_ids


@st.composite
def unclipped_fills(draw: st.DrawFn) -> tuple[Order, list[Filled]]:
    """An order and fills with distinct trade ids that together do not exceed it."""
    count = draw(st.integers(min_value=1, max_value=6))
    parts = [draw(fills(trade_id=st.just(f"u{index}"))) for index in range(count)]
    total = sum((part.fill.quantity for part in parts), Decimal(0))
    extra = draw(st.sampled_from([Decimal(0), Decimal("0.01"), Decimal(3)]))
    return make_order(total + extra), parts


def close(left: Decimal | None, right: Decimal | None) -> bool:
    """Equal up to Decimal's 28 significant digits (see the note in the test below)."""
    if left is None or right is None:
        return left is right
    return abs(left - right) <= abs(left) * Decimal("1e-25")


@PROPERTY
@given(case=unclipped_fills(), data=st.data())
def test_the_same_fills_in_any_order_give_the_same_result(
    case: tuple[Order, list[Filled]], data: st.DataObject
) -> None:
    order, parts = case
    shuffled = data.draw(st.permutations(parts))
    ack = Accepted(exchange_order_id="x1", timestamp=at(10))
    position = data.draw(st.integers(min_value=0, max_value=len(parts)))  # the ack arrives anywhere
    first = apply_events(order, [ack, *parts])
    second = apply_events(order, [*shuffled[:position], ack, *shuffled[position:]])
    assert second.filled_quantity == first.filled_quantity == sum(p.fill.quantity for p in parts)
    assert second.status is first.status
    assert second.fees == first.fees and second.trade_ids == first.trade_ids
    assert first.exchange_order_id == "x1"
    # Rule 1: an ack that arrives after the last fill finds a terminal order and is absorbed.
    ack_in_time = position < len(parts) or second.quantity > second.filled_quantity
    assert second.exchange_order_id == ("x1" if ack_in_time else None)
    # The average is folded one fill at a time from the previous (rounded) average, so two
    # orders of the same fills may differ in the 28th significant digit: see the report on
    # ``Order.filled_notional``. Within that, they agree.
    assert close(second.average_price, first.average_price)
    exact = sum(p.fill.price * p.fill.quantity for p in parts) / first.filled_quantity
    assert close(first.average_price, exact)


@PROPERTY
@given(order=orders(), sequence=st.lists(events, max_size=20), data=st.data())
def test_terminal_orders_absorb_everything(
    order: Order, sequence: list[OrderEvent], data: st.DataObject
) -> None:
    endings: list[OrderEvent] = [
        Canceled(timestamp=at(1)),
        Expired(timestamp=at(1)),
        Rejected(timestamp=at(1), reason="no"),
        Filled(make_fill("buy", order.quantity, "100", trade_id="all")),
    ]
    terminal = data.draw(st.sampled_from(endings))
    ended = apply_event(order, terminal)
    assert ended.is_terminal
    assert apply_events(ended, sequence) is ended


# --- one example per rule ---------------------------------------------------------------------


def fill(quantity: str, *, trade_id: str = "t1", price: str = "100", seconds: int = 5) -> Filled:
    return Filled(make_fill("buy", quantity, price, fee="0.1", trade_id=trade_id, seconds=seconds))


@pytest.mark.parametrize(
    "event",
    [
        Accepted(exchange_order_id="x9", timestamp=at(9)),
        fill("0.5", trade_id="late"),
        Canceled(timestamp=at(9)),
        Rejected(timestamp=at(9), reason="late"),
        Expired(timestamp=at(9)),
        OutcomeUnknown(timestamp=at(9), reason="timeout"),
        Triggered(timestamp=at(9)),
    ],
)
def test_rule_1_terminal_states_absorb_later_events(event: OrderEvent) -> None:
    canceled = apply_event(make_order("1"), Canceled(timestamp=at(1), reason="user"))
    assert apply_event(canceled, event) is canceled


def test_rule_2_a_fill_already_applied_changes_nothing() -> None:
    once = apply_event(make_order("1"), fill("0.4"))
    assert apply_event(once, fill("0.4")) is once
    assert apply_event(once, fill("0.3")) is once  # same trade id, other numbers: still a duplicate


def test_rule_3_a_fill_never_overfills() -> None:
    order = apply_events(make_order("1"), [fill("0.7", trade_id="a"), fill("0.7", trade_id="b", price="110")])
    assert order.filled_quantity == D(1) and order.status is OrderStatus.FILLED
    assert order.average_price == D(103)  # 0.7 at 100 and the 0.3 that fits at 110
    assert order.trade_ids == {"a", "b"}


def test_rule_4_the_status_follows_the_filled_quantity_even_before_the_ack() -> None:
    partly = apply_event(make_order("1"), fill("0.25"))
    assert partly.status is OrderStatus.PARTIALLY_FILLED
    acked = apply_event(partly, Accepted(exchange_order_id="x1", timestamp=at(6)))
    assert acked.status is OrderStatus.PARTIALLY_FILLED and acked.exchange_order_id == "x1"
    done = apply_event(acked, fill("0.75", trade_id="t2"))
    assert done.status is OrderStatus.FILLED and done.remaining == 0
    assert done.fees == {"USDT": D("0.2")}


def test_rule_5_accepted_moves_pending_and_unknown_to_new_and_keeps_the_venue_id() -> None:
    unknown = apply_event(make_order("1"), OutcomeUnknown(timestamp=at(1), reason="timeout"))
    new = apply_event(unknown, Accepted(exchange_order_id="x1", timestamp=at(2)))
    assert new.status is OrderStatus.NEW and new.exchange_order_id == "x1" and new.reason is None
    again = apply_event(new, Accepted(exchange_order_id="x2", timestamp=at(3)))
    assert again is new  # the venue id is kept once known
    no_id = apply_event(make_order("1"), Accepted(exchange_order_id=None, timestamp=at(1)))
    assert apply_event(no_id, Accepted(exchange_order_id="x3", timestamp=at(2))).exchange_order_id == "x3"


@pytest.mark.parametrize(
    "end", [Canceled(timestamp=at(9), reason="user"), Expired(timestamp=at(9), reason="ioc")]
)
def test_rule_6_cancel_and_expiry_keep_the_fills(end: OrderEvent) -> None:
    order = apply_events(make_order("1"), [fill("0.4"), end])
    assert order.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED)
    assert order.filled_quantity == D("0.4") and order.average_price == D(100)
    assert order.reason in ("user", "ioc")


def test_rule_7_rejected_only_before_a_fill() -> None:
    rejected = apply_event(make_order("1"), Rejected(timestamp=at(1), reason="min notional"))
    assert rejected.status is OrderStatus.REJECTED and rejected.reason == "min notional"
    partly = apply_event(make_order("1"), fill("0.4"))
    assert apply_event(partly, Rejected(timestamp=at(9), reason="late")) is partly


def test_rule_8_outcome_unknown_only_from_pending() -> None:
    unknown = apply_event(make_order("1"), OutcomeUnknown(timestamp=at(1), reason="timeout"))
    assert unknown.status is OrderStatus.UNKNOWN and unknown.reason == "timeout"
    assert unknown.is_open and not unknown.is_terminal
    new = apply_event(make_order("1"), Accepted(exchange_order_id="x", timestamp=at(1)))
    assert apply_event(new, OutcomeUnknown(timestamp=at(2), reason="timeout")) is new
    # Rejected only on the venue's word: an unknown order is not rejected on a guess, but a
    # fill found while resolving it counts.
    assert apply_event(unknown, fill("1")).status is OrderStatus.FILLED


def test_rule_9_triggered_marks_a_stop_order() -> None:
    stop = make_order("1", type=OrderType.STOP_MARKET)
    triggered = apply_event(stop, Triggered(timestamp=at(3)))
    assert triggered.triggered and triggered.status is OrderStatus.PENDING
    assert triggered.updated_at == at(3)


def test_rule_10_a_late_message_does_not_move_updated_at_back() -> None:
    filled_first = apply_event(make_order("1"), fill("0.4", seconds=50))
    acked = apply_event(filled_first, Accepted(exchange_order_id="x1", timestamp=at(10)))
    assert acked.updated_at == at(50)
    unknown = apply_event(
        replace(make_order("1"), updated_at=at(60)), OutcomeUnknown(timestamp=at(5), reason="t")
    )
    assert unknown.updated_at == at(60)


def test_statuses_know_whether_they_are_open() -> None:
    assert {status for status in OrderStatus if status.is_open} == {
        OrderStatus.PENDING,
        OrderStatus.NEW,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.UNKNOWN,
    }
    assert OrderSide.BUY.opposite is OrderSide.SELL and OrderSide.SELL.sign == -1
    assert isinstance(at(0), datetime)
