"""The numba fill rules and the Decimal fill rules of the paper exchange agree."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cryptoorchestrator.core.errors import ValidationFailed
from cryptoorchestrator.simulator.fill_model import (
    BUY,
    SELL,
    SLIPPAGE_FIXED,
    SLIPPAGE_VOLUME,
    FillRules,
    commission_nb,
    fill_price_nb,
    order_allowed_nb,
    round_quantity_nb,
    slippage_bps_nb,
)

decimals = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("100000"), places=8)
bps = st.decimals(min_value=Decimal("0"), max_value=Decimal("500"), places=2)
rates = st.decimals(min_value=Decimal("0"), max_value=Decimal("0.01"), places=5)
steps = st.sampled_from(
    [Decimal("0"), Decimal("0.00001"), Decimal("0.001"), Decimal("0.1"), Decimal("0.3"), Decimal("1")]
)


def close(a: float, b: Decimal) -> bool:
    return a == pytest.approx(float(b), rel=1e-9, abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from([SLIPPAGE_FIXED, SLIPPAGE_VOLUME]),
    fixed=bps,
    k=bps,
    cap=bps,
    quantity=decimals,
    volume=st.one_of(st.just(Decimal(0)), decimals),
    reference=decimals,
    side=st.sampled_from([BUY, SELL]),
)
def test_bt_slippage_and_fill_price_agree(
    model: int,
    fixed: Decimal,
    k: Decimal,
    cap: Decimal,
    quantity: Decimal,
    volume: Decimal,
    reference: Decimal,
    side: int,
) -> None:
    rules = FillRules(slippage_model=model, slippage_bps=fixed, impact_k_bps=k, impact_cap_bps=cap)
    nb_bps = slippage_bps_nb(float(quantity), float(volume), model, float(fixed), float(k), float(cap))
    assert close(nb_bps, rules.slippage(quantity, volume))
    nb_price = fill_price_nb(float(reference), side, nb_bps)
    assert close(nb_price, rules.fill_price(reference, side, quantity=quantity, bar_volume=volume))
    if side == BUY:
        assert nb_price >= float(reference)
    else:
        assert nb_price <= float(reference)


@settings(max_examples=300, deadline=None)
@given(quantity=decimals, price=decimals, maker=rates, taker=rates, taker_side=st.booleans())
def test_bt_commission_agrees(
    quantity: Decimal, price: Decimal, maker: Decimal, taker: Decimal, taker_side: bool
) -> None:
    rules = FillRules(maker_fee=maker, taker_fee=taker)
    rate = taker if taker_side else maker
    assert close(
        commission_nb(float(quantity), float(price), float(rate)),
        rules.commission(quantity, price, taker=taker_side),
    )


@settings(max_examples=500, deadline=None)
@given(quantity=decimals, step=steps, price=decimals, min_qty=decimals, min_notional=decimals)
def test_bt_rounding_and_minimums_agree(
    quantity: Decimal, step: Decimal, price: Decimal, min_qty: Decimal, min_notional: Decimal
) -> None:
    if step > 0:
        # Exactly at the tolerance's edge (|units - nearest| == 1e-12 * units) float error decides
        # which side a quantity falls on; the two versions agree everywhere else.
        units = quantity / step
        gap = abs(units - units.to_integral_value()) - Decimal("1e-12") * max(Decimal(1), abs(units))
        assume(abs(gap) > Decimal("1e-9") * max(Decimal(1), abs(units)) * Decimal("1e-6"))
    rules = FillRules(quantity_step=step, min_quantity=min_qty, min_notional=min_notional)
    rounded = rules.round_quantity(quantity)
    nb_rounded = round_quantity_nb(float(quantity), float(step))
    assert close(nb_rounded, rounded)
    # never up, except within the documented tolerance of 1e-12 relative
    assert rounded <= quantity * (1 + Decimal("1e-12")) + step * Decimal("1e-12")
    if step > 0:
        assert quantity - rounded < step
        assert rounded % step == 0
    allowed = rules.order_allowed(rounded, price)
    nb_allowed = order_allowed_nb(nb_rounded, float(price), float(min_qty), float(min_notional))
    notional = rounded * price
    if abs(notional - min_notional) > min_notional * Decimal("1e-9") and abs(
        rounded - min_qty
    ) > min_qty * Decimal("1e-9"):
        assert nb_allowed == allowed  # away from the knife edge float and Decimal must agree


def test_bt_rounding_absorbs_float_error() -> None:
    assert round_quantity_nb(0.3, 0.1) == pytest.approx(0.3)
    assert round_quantity_nb(0.29, 0.1) == pytest.approx(0.2)
    assert FillRules(quantity_step=Decimal("0.1")).round_quantity(Decimal("0.3")) == Decimal("0.3")


def test_bt_fill_rules_refuse_bad_values() -> None:
    with pytest.raises(ValidationFailed) as info:
        FillRules(taker_fee=Decimal("-0.1"))
    assert info.value.details["field"] == "taker_fee"
    with pytest.raises(ValidationFailed):
        FillRules(slippage_model=7)
