"""Position arithmetic on hand-computed examples (the rules of ``domain/positions.py``)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Context, Decimal, localcontext

import pytest

from cryptoorchestrator.core.errors import OrderRejected, ValidationFailed
from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.orders import Fill
from cryptoorchestrator.domain.positions import (
    Position,
    apply_fill,
    liquidation_price,
    unrealized_pnl,
    with_leverage,
)

from ._factories import SPOT, SWAP, D, at, make_fill


def fill_swap(side: str, quantity: str, price: str, *, fee: str = "0", seconds: int = 0) -> Fill:
    return make_fill(side, quantity, price, fee=fee, symbol=SWAP.symbol, seconds=seconds)


def step(
    position: Position | None,
    fill: Fill,
    *,
    instrument: Instrument = SWAP,
    leverage: str = "10",
) -> tuple[Position, Decimal]:
    return apply_fill(position, fill, instrument=instrument, leverage=D(leverage), account_id="acc")


# --- swaps: long, add, partial close, flip, short ---------------------------------------------


def test_a_long_opens_at_the_fill_price_with_margin_notional_over_leverage() -> None:
    position, realized = step(None, fill_swap("buy", "2", "100", fee="0.1"))
    assert (position.side, position.quantity, position.entry_price) == ("long", D(2), D(100))
    assert position.margin == D(20)  # 2 * 100 / 10
    assert position.fees_paid == D("0.1")
    assert realized == 0 and position.realized_pnl == 0
    assert position.opened_at == at(0) and position.kind == "swap" and position.account_id == "acc"


def test_adding_to_a_long_averages_the_entry_by_quantity() -> None:
    position, _ = step(None, fill_swap("buy", "2", "100"))
    position, realized = step(position, fill_swap("buy", "1", "130", seconds=5))
    assert position.quantity == D(3)
    assert position.entry_price == D(110)  # (2 * 100 + 1 * 130) / 3
    assert position.margin == D(33)  # 3 * 110 / 10
    assert realized == 0
    assert position.opened_at == at(0) and position.updated_at == at(5)


def test_a_partial_close_realises_on_the_closed_part_and_keeps_the_entry() -> None:
    position, _ = step(None, fill_swap("buy", "3", "110"))
    position, realized = step(position, fill_swap("sell", "1", "140"))
    assert realized == D(30)  # (140 - 110) * 1
    assert position.quantity == D(2) and position.entry_price == D(110)
    assert position.margin == D(22)  # released in proportion: 33 * 2 / 3
    assert position.realized_pnl == D(30)


def test_a_fill_through_zero_closes_then_opens_the_rest_at_the_fill_price() -> None:
    position, _ = step(None, fill_swap("buy", "2", "110"))
    position, realized = step(position, fill_swap("sell", "5", "120", seconds=9))
    assert realized == D(20)  # the closing 2: (120 - 110) * 2
    assert position.side == "short" and position.quantity == D(-3)
    assert position.entry_price == D(120)
    assert position.margin == D(36)  # 3 * 120 / 10
    assert position.opened_at == at(9)  # a new position


def test_a_short_gains_when_the_price_falls() -> None:
    position, _ = step(None, fill_swap("sell", "2", "100"))
    assert position.quantity == D(-2) and position.entry_price == D(100)
    position, realized = step(position, fill_swap("buy", "0.5", "90"))
    assert realized == D(5)  # (100 - 90) * 0.5
    assert position.quantity == D("-1.5")
    assert unrealized_pnl(position, D(80)) == D(30)  # (100 - 80) * 1.5
    assert position.unrealized_pnl(D(110)) == D(-15)
    position, realized = step(position, fill_swap("buy", "1.5", "104"))
    assert realized == D(-6)  # (100 - 104) * 1.5
    assert position.realized_pnl == D(-1)


def test_adding_to_a_short_averages_its_entry() -> None:
    position, _ = step(None, fill_swap("sell", "1", "100"))
    position, _ = step(position, fill_swap("sell", "3", "120"))
    assert position.quantity == D(-4) and position.entry_price == D(115)  # (100 + 360) / 4


def test_closing_to_zero_leaves_a_flat_position_without_entry_or_margin() -> None:
    position, _ = step(None, fill_swap("buy", "1", "100", fee="0.05"))
    position, realized = step(position, fill_swap("sell", "1", "90", fee="0.045"))
    assert realized == D(-10)
    assert (position.side, position.quantity, position.entry_price, position.margin) == (
        "flat",
        D(0),
        None,
        D(0),
    )
    assert position.opened_at is None and position.is_flat
    assert position.fees_paid == D("0.095")
    assert liquidation_price(position, D("0.005")) is None
    assert unrealized_pnl(position, D(1000)) == 0


def test_margin_is_rounded_up_to_the_money_quantum() -> None:
    position, _ = step(None, fill_swap("buy", "1", "100"), leverage="3")
    assert position.margin == D("33.333333333334")  # 100 / 3, never understated


def test_notional_is_the_unsigned_value_at_the_mark() -> None:
    position, _ = step(None, fill_swap("sell", "2", "100"))
    assert position.notional(D(105)) == D(210)


def test_fees_paid_values_base_fees_at_the_fill_price() -> None:
    fill = make_fill("buy", "2", "100", fee="0.002", fee_asset="BTC", symbol=SWAP.symbol)
    position, _ = step(None, fill)
    assert position.fees_paid == D("0.2")
    assert position.quantity == D(2)  # a swap's contracts are not paid in base


# --- liquidation and leverage ------------------------------------------------------------------


def test_liquidation_price_of_an_isolated_linear_long_and_short() -> None:
    long_position, _ = step(None, fill_swap("buy", "1", "100"))
    short_position, _ = step(None, fill_swap("sell", "1", "100"))
    assert liquidation_price(long_position, D("0.005")) == D("90.5")  # 100 * (1 - 0.1 + 0.005)
    assert liquidation_price(short_position, D("0.005")) == D("109.5")  # 100 * (1 + 0.1 - 0.005)
    one_x, _ = step(None, fill_swap("buy", "1", "100"), leverage="1")
    assert liquidation_price(one_x, D("0.005")) == D("0.5")


def test_spot_has_no_liquidation_price() -> None:
    position, _ = step(None, make_fill("buy", "1", "100"), instrument=SPOT)
    assert liquidation_price(position, D("0.005")) is None


def test_changing_leverage_recomputes_the_margin() -> None:
    position, _ = step(None, fill_swap("buy", "2", "100"))
    assert with_leverage(position, D(5), instrument=SWAP).margin == D(40)
    assert with_leverage(position, D(20), instrument=SWAP).margin == D(10)
    assert with_leverage(position, D(50), instrument=SWAP).leverage == D(50)


@pytest.mark.parametrize("leverage", ["0", "0.5", "51", "-3"])
def test_leverage_outside_one_to_the_maximum_is_refused(leverage: str) -> None:
    position, _ = step(None, fill_swap("buy", "2", "100"))
    with pytest.raises(OrderRejected):
        with_leverage(position, D(leverage), instrument=SWAP)
    with pytest.raises(OrderRejected):
        step(None, fill_swap("buy", "2", "100"), leverage=leverage)


def test_spot_leverage_cannot_change() -> None:
    position, _ = step(None, make_fill("buy", "1", "100"), instrument=SPOT)
    assert position.leverage == 1
    with pytest.raises(OrderRejected):
        with_leverage(position, D(2), instrument=SPOT)


# --- spot --------------------------------------------------------------------------------------


def test_a_spot_buy_with_a_base_fee_holds_the_quantity_less_the_fee() -> None:
    position, realized = step(
        None, make_fill("buy", "1", "100", fee="0.001", fee_asset="BTC"), instrument=SPOT, leverage="1"
    )
    assert position.quantity == D("0.999")
    assert position.entry_price == D(100)  # fees excluded from the entry
    assert position.fees_paid == D("0.1")  # 0.001 BTC at 100
    assert position.margin == 0 and realized == 0


def test_spot_fee_dust_closes_exactly_when_the_holding_is_sold() -> None:
    bought, _ = step(None, make_fill("buy", "1", "100", fee="0.001", fee_asset="BTC"), instrument=SPOT)
    sold, realized = step(bought, make_fill("sell", "0.999", "110", fee="0.10989"), instrument=SPOT)
    assert realized == D("9.99")  # (110 - 100) * 0.999
    assert sold.quantity == 0 and sold.entry_price is None
    assert sold.fees_paid == D("0.20989")
    # Account value: -100 USDT + 0.999 * 110 - 0.10989 = 9.78011 = P&L - fees.
    assert sold.realized_pnl - sold.fees_paid == D("9.78011")


def test_a_spot_sell_with_a_base_fee_takes_the_fee_out_of_the_holding_at_the_fill_price() -> None:
    bought, _ = step(None, make_fill("buy", "2", "100"), instrument=SPOT)
    sold, realized = step(
        bought, make_fill("sell", "1", "110", fee="0.001", fee_asset="BTC"), instrument=SPOT
    )
    assert sold.quantity == D("0.999")
    assert realized == D("10.01")  # (110 - 100) * 1.001
    assert sold.fees_paid == D("0.11")


def test_spot_average_cost_and_realised_pnl() -> None:
    position, _ = step(None, make_fill("buy", "1", "100", fee="0.1"), instrument=SPOT)
    position, _ = step(position, make_fill("buy", "1", "200", fee="0.2"), instrument=SPOT)
    assert position.entry_price == D(150)
    position, realized = step(position, make_fill("sell", "0.5", "300"), instrument=SPOT)
    assert realized == D(75)  # (300 - 150) * 0.5
    assert position.entry_price == D(150) and position.quantity == D("1.5")
    assert position.fees_paid == D("0.3")


def test_a_third_asset_fee_leaves_spot_quantity_and_fees_paid_alone() -> None:
    position, _ = step(None, make_fill("buy", "1", "100", fee="0.01", fee_asset="BNB"), instrument=SPOT)
    assert position.quantity == D(1) and position.fees_paid == 0


def test_spot_never_goes_below_zero() -> None:
    position, _ = step(None, make_fill("buy", "1", "100"), instrument=SPOT)
    with pytest.raises(OrderRejected) as raised:
        step(position, make_fill("sell", "1.0001", "100"), instrument=SPOT)
    assert raised.value.details["held"] == "1"
    with pytest.raises(OrderRejected):
        step(position, make_fill("sell", "1", "100", fee="0.0001", fee_asset="BTC"), instrument=SPOT)
    with pytest.raises(OrderRejected):
        step(None, make_fill("sell", "0.1", "100"), instrument=SPOT)


def test_apply_fill_is_pure() -> None:
    position, _ = step(None, fill_swap("buy", "1", "100"))
    copy = replace(position)
    step(position, fill_swap("sell", "3", "90"))
    assert position == copy


@pytest.mark.parametrize(
    "fill",
    [
        make_fill("buy", "1", "100", symbol="ETH/USDT"),
        make_fill("buy", "0", "100"),
        make_fill("buy", "1", "0"),
        make_fill("buy", "1", "100", fee="-1"),
        make_fill("buy", "1", "100", fee="2", fee_asset="BTC"),
    ],
)
def test_malformed_fills_are_refused(fill: Fill) -> None:
    with pytest.raises(ValidationFailed):
        step(None, fill, instrument=SPOT)


def test_results_do_not_depend_on_the_callers_decimal_context() -> None:
    fills = [
        fill_swap("buy", "0.007", "101.3"),
        fill_swap("buy", "0.013", "99.7"),
        fill_swap("sell", "0.011", "98.1"),
    ]

    def run() -> tuple[Position | None, Decimal]:
        position: Position | None = None
        total = D(0)
        for fill in fills:
            position, realized = step(position, fill, leverage="3")
            total += realized
        return position, total

    expected = run()
    with localcontext(Context(prec=12)):
        assert run() == expected
    position, realized = expected
    assert position is not None
    assert position.entry_price == D("100.26")  # (0.7091 + 1.2961) / 0.02
    assert realized == D("-0.02376")  # (98.1 - 100.26) * 0.011
    assert position.margin == D("0.30078")  # 0.009 * 100.26 / 3
