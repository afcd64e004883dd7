"""The ledger (``domain/ledger.py``): invariants on random operation sequences, and examples
of each rule of the module docstring."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Context, Decimal, localcontext
from typing import TypeVar

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from cryptoorchestrator.core.errors import (
    CryptoOrchestratorError,
    InsufficientBalance,
    OrderRejected,
    ValidationFailed,
)
from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.ledger import AssetBalance, Ledger, LedgerEntry, sellable
from cryptoorchestrator.domain.orders import Fill, OrderSide
from cryptoorchestrator.domain.positions import Position

from ._factories import SPOT, SWAP, T0, D, make_fill

PROPERTY = settings(max_examples=200, deadline=None)
T = TypeVar("T")


def spot_ledger(**balances: str) -> Ledger:
    return Ledger.fresh("acc", {asset: D(amount) for asset, amount in balances.items()}, timestamp=T0)


def sums_of(entries: list[LedgerEntry] | tuple[LedgerEntry, ...]) -> dict[str, tuple[Decimal, Decimal]]:
    """Each asset's (free, locked) as the sum of its entries from zero, computed here, apart
    from the ledger's own check."""
    sums: dict[str, tuple[Decimal, Decimal]] = {}
    with localcontext(Context(prec=80)):  # exact sums, whatever order the entries come in
        for entry in entries:
            free, locked = sums.get(entry.asset, (D(0), D(0)))
            sums[entry.asset] = (free + entry.free_delta, locked + entry.locked_delta)
    return sums


def locked(ledger: Ledger, asset: str, amount: Decimal) -> bool:
    """Lock for an order; True once done (a refused lock raises)."""
    ledger.lock(asset, amount, timestamp=T0, reference="order")
    return True


def state(ledger: Ledger) -> tuple[dict[str, AssetBalance], tuple[LedgerEntry, ...]]:
    return ledger.balances(), ledger.entries


# --- rule 1: balances are the sums of entries ------------------------------------------------


def test_a_fresh_ledger_books_its_opening_balances_as_entries() -> None:
    ledger = spot_ledger(USDT="1000", BTC="0.5")
    assert [(e.asset, e.free_delta, e.kind) for e in ledger.entries] == [
        ("USDT", D(1000), "reset"),
        ("BTC", D("0.5"), "reset"),
    ]
    assert ledger.balance("USDT") == AssetBalance("USDT", free=D(1000))
    assert ledger.total("BTC") == D("0.5") and ledger.balance("ETH") == AssetBalance("ETH")
    deposited = Ledger.fresh(
        "acc", {"USDT": AssetBalance("USDT", D(5), D(2))}, timestamp=T0, kind="deposit", reference="seed"
    )
    assert deposited.entries[0].kind == "deposit" and deposited.balance("USDT").locked == D(2)
    with pytest.raises(ValidationFailed):
        Ledger.fresh("acc", {"USDT": D(1)}, timestamp=T0, kind="trade")


def test_a_ledger_rebuilt_from_stored_balances_sums_from_them() -> None:
    stored = {"USDT": AssetBalance("USDT", free=D(900), locked=D(100))}
    ledger = Ledger("acc", stored)
    assert ledger.entries == () and ledger.balances() == stored
    ledger.unlock("USDT", D(40), timestamp=T0, reference="o1")
    ledger.check_invariants()
    assert ledger.balance("USDT") == AssetBalance("USDT", D(940), D(60))
    with pytest.raises(ValidationFailed):
        Ledger("acc", {"BTC": AssetBalance("USDT", D(1))})


def test_a_negative_stored_balance_is_refused_on_spot_and_allowed_on_margin_accounts() -> None:
    negative = {"USDT": AssetBalance("USDT", free=D(-5))}
    with pytest.raises(CryptoOrchestratorError) as raised:
        Ledger("acc", negative)
    assert raised.value.code == "LEDGER_INVARIANT_BROKEN" and raised.value.needs_operator is False
    assert Ledger("acc", negative, allow_negative=True).balance("USDT").free == D(-5)
    with pytest.raises(CryptoOrchestratorError):
        Ledger("acc", {"USDT": AssetBalance("USDT", locked=D(-1))}, allow_negative=True)


def test_take_entries_hands_over_the_new_entries_once() -> None:
    ledger = spot_ledger(USDT="1000")
    ledger.lock("USDT", D(100), timestamp=T0, reference="o1")
    taken = ledger.take_entries()
    assert [e.kind for e in taken] == ["reset", "lock"]
    assert ledger.entries == () and ledger.take_entries() == []
    ledger.unlock("USDT", D(30), timestamp=T0, reference="o1")
    ledger.check_invariants()
    assert [e.kind for e in ledger.take_entries()] == ["unlock"]
    assert ledger.balance("USDT") == AssetBalance("USDT", D(930), D(70))


def test_balances_is_a_snapshot() -> None:
    ledger = spot_ledger(USDT="10")
    snapshot = ledger.balances()
    ledger.deposit("USDT", D(5), timestamp=T0)
    assert snapshot["USDT"].free == D(10) and ledger.balance("USDT").free == D(15)


# --- rules 2-4: Decimal only, all or nothing, never negative ---------------------------------


@pytest.mark.parametrize("amount", [1.5, 2, Decimal("NaN"), Decimal("Infinity"), Decimal(-1)])
def test_amounts_must_be_finite_non_negative_decimals(amount: object) -> None:
    ledger = spot_ledger(USDT="10")
    with pytest.raises(ValidationFailed):
        ledger.deposit("USDT", amount, timestamp=T0)  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed):
        sellable(ledger, SPOT, amount)  # type: ignore[arg-type]
    assert ledger.balance("USDT").free == D(10)


def test_a_lock_beyond_free_is_refused_with_the_numbers() -> None:
    ledger = spot_ledger(USDT="100")
    ledger.lock("USDT", D(60), timestamp=T0, reference="o1")
    before = state(ledger)
    with pytest.raises(InsufficientBalance) as raised:
        ledger.lock("USDT", D("40.5"), timestamp=T0, reference="o2")
    assert raised.value.details == {"asset": "USDT", "required": "40.5", "available": "40"}
    assert raised.value.code == "INSUFFICIENT_BALANCE"
    assert state(ledger) == before


def test_unlock_never_releases_more_than_is_locked() -> None:
    ledger = spot_ledger(USDT="100")
    ledger.lock("USDT", D(30), timestamp=T0)
    assert ledger.unlock("USDT", D(50), timestamp=T0) == D(30)
    assert ledger.balance("USDT") == AssetBalance("USDT", D(100), D(0))
    assert ledger.unlock("USDT", D(5), timestamp=T0) == 0
    assert ledger.unlock("BTC", D(5), timestamp=T0) == 0
    assert [e.kind for e in ledger.entries] == ["reset", "lock", "unlock"]  # nothing moved: no entry


def test_withdrawals_and_locks_never_borrow_even_on_margin_accounts() -> None:
    ledger = Ledger.fresh("acc", {"USDT": D(10)}, timestamp=T0, allow_negative=True)
    with pytest.raises(InsufficientBalance):
        ledger.withdraw("USDT", D(11), timestamp=T0)
    with pytest.raises(InsufficientBalance):
        ledger.lock("USDT", D(11), timestamp=T0)
    ledger.withdraw("USDT", D(10), timestamp=T0, reference="w1")
    assert ledger.total("USDT") == 0 and ledger.entries[-1].kind == "withdrawal"


def test_sums_are_exact_so_a_lock_taken_in_parts_leaves_no_dust() -> None:
    ledger = spot_ledger(USDT="1000000000")
    odd = D(1) / D(3)  # 28 significant digits, far below the balance's magnitude
    ledger.lock("USDT", odd, timestamp=T0)
    ledger.lock("USDT", odd, timestamp=T0)
    ledger.unlock("USDT", odd + odd, timestamp=T0)
    assert ledger.balance("USDT") == AssetBalance("USDT", D(1000000000), D(0))
    ledger.check_invariants()


def test_zero_amounts_book_nothing() -> None:
    ledger = spot_ledger(USDT="10")
    ledger.deposit("USDT", D(0), timestamp=T0)
    ledger.lock("USDT", D(0), timestamp=T0)
    assert len(ledger.entries) == 1


def test_reset_sets_the_balances_through_entries() -> None:
    ledger = spot_ledger(USDT="10", BTC="1")
    ledger.lock("BTC", D("0.5"), timestamp=T0)
    ledger.reset({"USDT": D(1000)}, timestamp=T0, reference="reset")
    assert ledger.balances() == {
        "USDT": AssetBalance("USDT", D(1000)),
        "BTC": AssetBalance("BTC", D(0), D(0)),
    }
    ledger.check_invariants()


# --- rules 5-7: spot fills -------------------------------------------------------------------


def test_a_market_buy_locked_with_a_buffer_releases_the_rest() -> None:
    ledger = spot_ledger(USDT="1000")
    ledger.lock("USDT", D(110), timestamp=T0, reference="o1")  # 1 BTC at ~100 plus 10 %
    settled = ledger.settle_fill(
        make_fill("buy", "1", "102", fee="0.102", fee_asset="USDT"), instrument=SPOT, order_locked=D(110)
    )
    assert settled.order_locked == D("7.898")  # 110 - 102 - 0.102: the fee came from the lock too
    assert ledger.balance("USDT") == AssetBalance("USDT", D(890), D("7.898"))
    assert ledger.balance("BTC") == AssetBalance("BTC", D(1))
    ledger.unlock("USDT", settled.order_locked, timestamp=T0, reference="o1")
    assert ledger.balance("USDT") == AssetBalance("USDT", D("897.898"), D(0))
    assert [(e.asset, e.kind, e.free_delta, e.locked_delta) for e in settled.entries] == [
        ("USDT", "trade", D(0), D(-102)),
        ("BTC", "trade", D(1), D(0)),
        ("USDT", "fee", D(0), D("-0.102")),
    ]
    assert all(e.reference == "t1" and e.timestamp == T0 for e in settled.entries)
    assert settled.position.quantity == D(1) and settled.realized_pnl == 0
    ledger.check_invariants()


def test_a_fill_above_the_remaining_lock_takes_the_excess_from_free() -> None:
    ledger = spot_ledger(USDT="1000")
    ledger.lock("USDT", D(50), timestamp=T0)
    settled = ledger.settle_fill(make_fill("buy", "1", "100"), instrument=SPOT, order_locked=D(50))
    assert settled.order_locked == 0
    assert ledger.balance("USDT") == AssetBalance("USDT", D(900), D(0))


def test_a_fill_that_neither_lock_nor_free_can_pay_changes_nothing() -> None:
    ledger = spot_ledger(USDT="60")
    ledger.lock("USDT", D(50), timestamp=T0)
    before = state(ledger)
    with pytest.raises(InsufficientBalance) as raised:
        ledger.settle_fill(make_fill("buy", "1", "100", fee="0.1"), instrument=SPOT, order_locked=D(50))
    assert raised.value.details == {"asset": "USDT", "required": "50.1", "available": "10"}
    assert state(ledger) == before


def test_claiming_more_lock_than_the_ledger_holds_is_refused() -> None:
    ledger = spot_ledger(USDT="1000")
    ledger.lock("USDT", D(10), timestamp=T0)
    before = state(ledger)
    with pytest.raises(InsufficientBalance) as raised:
        ledger.settle_fill(make_fill("buy", "1", "100"), instrument=SPOT, order_locked=D(100))
    assert raised.value.details["balance"] == "locked"
    assert state(ledger) == before


def test_a_sell_takes_base_from_the_lock_and_credits_the_proceeds() -> None:
    ledger = spot_ledger(USDT="1000")
    bought = ledger.settle_fill(make_fill("buy", "2", "100"), instrument=SPOT)
    ledger.lock("BTC", D("1.5"), timestamp=T0, reference="o2")
    sold = ledger.settle_fill(
        make_fill("sell", "1", "120", fee="0.12", trade_id="t2", order_id="o2"),
        instrument=SPOT,
        position=bought.position,
        order_locked=D("1.5"),
    )
    assert sold.order_locked == D("0.5") and sold.realized_pnl == D(20)
    assert ledger.balance("BTC") == AssetBalance("BTC", D("0.5"), D("0.5"))
    assert ledger.balance("USDT") == AssetBalance("USDT", D("919.88"))  # 800 + 120 - 0.12
    fee = sold.entries[-1]
    assert (fee.asset, fee.kind, fee.free_delta, fee.reference) == ("USDT", "fee", D("-0.12"), "t2")


def test_fees_are_booked_in_the_asset_they_are_charged_in() -> None:
    ledger = spot_ledger(USDT="1000", BNB="1")
    base_fee = ledger.settle_fill(make_fill("buy", "1", "100", fee="0.001", fee_asset="BTC"), instrument=SPOT)
    assert [(e.asset, e.kind) for e in base_fee.entries] == [
        ("USDT", "trade"),
        ("BTC", "trade"),
        ("BTC", "fee"),
    ]
    assert ledger.balance("BTC").free == D("0.999") and ledger.balance("USDT").free == D(900)
    bnb_fee = ledger.settle_fill(
        make_fill("buy", "1", "100", fee="0.01", fee_asset="BNB", trade_id="t2"),
        instrument=SPOT,
        position=base_fee.position,
    )
    assert bnb_fee.entries[-1].asset == "BNB" and ledger.balance("BNB").free == D("0.99")
    assert bnb_fee.position.quantity == D("1.999")  # a BNB fee leaves the holding whole


def test_a_third_asset_fee_without_that_asset_fails_the_fill_whole() -> None:
    ledger = spot_ledger(USDT="1000")
    before = state(ledger)
    with pytest.raises(InsufficientBalance) as raised:
        ledger.settle_fill(make_fill("buy", "1", "100", fee="0.01", fee_asset="BNB"), instrument=SPOT)
    assert raised.value.details["asset"] == "BNB"
    assert state(ledger) == before


def test_a_spot_sell_beyond_the_holding_is_refused_and_changes_nothing() -> None:
    ledger = spot_ledger(USDT="1000", BTC="5")
    before = state(ledger)
    with pytest.raises(OrderRejected):
        ledger.settle_fill(make_fill("sell", "1", "100"), instrument=SPOT)  # no position: nothing held
    assert state(ledger) == before


def test_the_fill_reference_and_time_can_be_overridden() -> None:
    ledger = spot_ledger(USDT="1000")
    settled = ledger.settle_fill(make_fill("buy", "1", "100"), instrument=SPOT, reference="o1", timestamp=T0)
    assert {e.reference for e in settled.entries} == {"o1"}


# --- rule 9: the exit sells what is free -----------------------------------------------------


def test_an_exit_sells_only_what_is_free_rounded_down_to_the_step() -> None:
    ledger = spot_ledger(USDT="1000")
    ledger.settle_fill(make_fill("buy", "1", "100", fee="0.00075", fee_asset="BTC"), instrument=SPOT)
    assert ledger.balance("BTC").free == D("0.99925")
    assert sellable(ledger, SPOT, D(1)) == D("0.9992")  # the fee dust stays behind
    assert sellable(ledger, SPOT, D("0.5")) == D("0.5")
    ledger.lock("BTC", D("0.4"), timestamp=T0, reference="stop-loss")
    assert sellable(ledger, SPOT, D(1)) == D("0.5992")
    assert sellable(spot_ledger(USDT="1"), SPOT, D(1)) == 0
    coarse = Instrument(symbol="BTC/USDT", base="BTC", quote="USDT", quantity_step=D("0.01"))
    assert sellable(ledger, coarse, D(1)) == D("0.59")


# --- rule 8: swaps ---------------------------------------------------------------------------


def swap_fill(side: str, quantity: str, price: str, *, fee: str = "0", trade_id: str = "t1") -> Fill:
    return make_fill(side, quantity, price, fee=fee, trade_id=trade_id, symbol=SWAP.symbol)


def test_a_swap_opens_reduces_and_flips_through_margin_and_pnl_entries() -> None:
    ledger = spot_ledger(USDT="1000")
    opened = ledger.settle_fill(swap_fill("buy", "1", "100", fee="0.05"), instrument=SWAP, leverage=D(10))
    assert [(e.kind, e.free_delta, e.locked_delta) for e in opened.entries] == [
        ("margin", D(-10), D(10)),
        ("fee", D("-0.05"), D(0)),
    ]
    assert ledger.balance("USDT") == AssetBalance("USDT", D("989.95"), D(10))
    assert ledger.balance("BTC") == AssetBalance("BTC")  # a swap books no base

    reduced = ledger.settle_fill(
        swap_fill("sell", "0.5", "120", fee="0.03", trade_id="t2"), instrument=SWAP, position=opened.position
    )
    assert reduced.realized_pnl == D(10)  # (120 - 100) * 0.5
    assert [(e.kind, e.free_delta, e.locked_delta) for e in reduced.entries] == [
        ("margin", D(5), D(-5)),  # half the margin released
        ("realized_pnl", D(10), D(0)),
        ("fee", D("-0.03"), D(0)),
    ]
    assert ledger.balance("USDT") == AssetBalance("USDT", D("1004.92"), D(5))

    flipped = ledger.settle_fill(
        swap_fill("sell", "1.5", "110", trade_id="t3"), instrument=SWAP, position=reduced.position
    )
    assert flipped.realized_pnl == D(5)  # (110 - 100) * 0.5
    assert flipped.position.quantity == D(-1) and flipped.position.margin == D(11)
    assert ledger.balance("USDT") == AssetBalance("USDT", D("1003.92"), D(11))  # 1004.92 - 6 + 5
    ledger.check_invariants()


def test_swap_margin_comes_from_the_order_lock_first() -> None:
    ledger = spot_ledger(USDT="100")
    ledger.lock("USDT", D(25), timestamp=T0, reference="o1")  # margin for 2 at ~100, 10x, plus room
    settled = ledger.settle_fill(
        swap_fill("buy", "2", "100", fee="0.1"), instrument=SWAP, leverage=D(10), order_locked=D(25)
    )
    assert settled.order_locked == D("4.9")  # 25 - 20 margin - 0.1 fee
    assert [(e.kind, e.free_delta, e.locked_delta) for e in settled.entries] == [("fee", D(0), D("-0.1"))]
    ledger.unlock("USDT", settled.order_locked, timestamp=T0, reference="o1")
    assert ledger.balance("USDT") == AssetBalance("USDT", D("79.9"), D(20))


def test_a_swap_loss_beyond_free_is_refused_on_an_account_that_cannot_go_negative() -> None:
    strict = spot_ledger(USDT="10")
    opened = strict.settle_fill(swap_fill("buy", "1", "100"), instrument=SWAP, leverage=D(10))
    before = state(strict)
    with pytest.raises(InsufficientBalance):
        strict.settle_fill(
            swap_fill("sell", "1", "70", trade_id="t2"), instrument=SWAP, position=opened.position
        )
    assert state(strict) == before

    lenient = Ledger.fresh("acc", {"USDT": D(10)}, timestamp=T0, allow_negative=True)
    opened = lenient.settle_fill(swap_fill("buy", "1", "100"), instrument=SWAP, leverage=D(10))
    lenient.settle_fill(
        swap_fill("sell", "1", "70", trade_id="t2"), instrument=SWAP, position=opened.position
    )
    assert lenient.balance("USDT") == AssetBalance("USDT", D(-20), D(0))
    lenient.check_invariants()


def test_set_leverage_moves_the_margin_difference() -> None:
    ledger = spot_ledger(USDT="100")
    opened = ledger.settle_fill(swap_fill("buy", "2", "100"), instrument=SWAP, leverage=D(10))
    lower = ledger.set_leverage(opened.position, D(4), instrument=SWAP, timestamp=T0, reference="lev")
    assert lower.margin == D(50) and ledger.balance("USDT") == AssetBalance("USDT", D(50), D(50))
    higher = ledger.set_leverage(lower, D(20), instrument=SWAP, timestamp=T0)
    assert higher.margin == D(10) and ledger.balance("USDT") == AssetBalance("USDT", D(90), D(10))
    before = state(ledger)
    with pytest.raises(InsufficientBalance):
        ledger.set_leverage(higher, D(1), instrument=SWAP, timestamp=T0)  # needs 190 more
    with pytest.raises(OrderRejected):
        ledger.set_leverage(higher, D(51), instrument=SWAP, timestamp=T0)
    assert state(ledger) == before


# --- properties: spot ------------------------------------------------------------------------

amounts = st.integers(min_value=0, max_value=5_000_000).map(lambda units: Decimal(units).scaleb(-4))
quantities = st.integers(min_value=1, max_value=30_000).map(lambda units: Decimal(units).scaleb(-4))
prices = st.integers(min_value=1, max_value=200_000).map(lambda units: Decimal(units).scaleb(-2))
fee_assets = st.sampled_from(["USDT", "BTC", "BNB", None])
buffers = st.sampled_from([D(0), D("0.01"), D("0.5")])
lock_modes = st.sampled_from(["lock", "none", "claim"])

spot_operations = st.one_of(
    st.tuples(st.just("deposit"), st.sampled_from(["USDT", "BTC", "BNB"]), amounts),
    st.tuples(st.just("withdraw"), st.sampled_from(["USDT", "BTC", "BNB"]), amounts),
    st.tuples(st.just("lock"), st.sampled_from(["USDT", "BTC"]), amounts),
    st.tuples(st.just("unlock"), st.sampled_from(["USDT", "BTC"]), amounts),
    st.tuples(st.just("take")),
    st.tuples(
        st.just("fill"), st.sampled_from(OrderSide), quantities, prices, fee_assets, buffers, lock_modes
    ),
    st.tuples(
        st.just("fill"), st.sampled_from(OrderSide), quantities, prices, fee_assets, buffers, lock_modes
    ),
    st.tuples(st.just("exit"), quantities, prices),
)


@dataclass
class Model:
    """What the test knows independently of the ledger."""

    ledger: Ledger
    stored: list[LedgerEntry] = field(default_factory=list)
    start: dict[str, AssetBalance] = field(default_factory=dict)
    position: Position | None = None
    expected_quantity: Decimal = Decimal(0)
    external_base: Decimal = Decimal(0)  # base deposited less withdrawn
    trades: int = 0

    def check(self) -> None:
        with localcontext(Context(prec=80)):  # exact comparisons
            self._check()

    def _check(self) -> None:
        ledger = self.ledger
        ledger.check_invariants()
        sums = sums_of([*self.stored, *ledger.entries])
        for asset, balance in ledger.balances().items():
            opening = self.start.get(asset, AssetBalance(asset))
            free, locked = sums.get(asset, (D(0), D(0)))
            assert (opening.free + free, opening.locked + locked) == (balance.free, balance.locked)
            assert isinstance(balance.free, Decimal) and isinstance(balance.locked, Decimal)
            if not ledger.allow_negative:
                assert balance.free >= 0 and balance.locked >= 0
        held = self.position.quantity if self.position is not None else D(0)
        assert held == self.expected_quantity >= 0
        assert ledger.total("BTC") == self.external_base + held  # the base moved exactly as the position


def fee_of(fill_asset: str | None, quantity: Decimal, price: Decimal) -> tuple[Decimal, str]:
    if fill_asset == "USDT":
        return (quantity * price * D("0.001")), "USDT"
    if fill_asset == "BTC":
        return quantity * D("0.00075"), "BTC"
    if fill_asset == "BNB":
        return D("0.0001"), "BNB"
    return D(0), "USDT"


def spot_fill(
    model: Model, side: OrderSide, quantity: Decimal, price: Decimal, fee_asset: str | None
) -> Fill:
    model.trades += 1
    fee, asset = fee_of(fee_asset, quantity, price)
    return make_fill(side, quantity, price, fee=fee, fee_asset=asset, trade_id=f"t{model.trades}")


def run_fill(model: Model, operation: tuple[object, ...]) -> None:
    _, side, quantity, price, fee_asset, buffer, mode = operation
    assert isinstance(side, OrderSide) and isinstance(quantity, Decimal) and isinstance(price, Decimal)
    assert isinstance(buffer, Decimal) and isinstance(mode, str)
    ledger = model.ledger
    fill = spot_fill(model, side, quantity, price, fee_asset if isinstance(fee_asset, str) else None)
    lock_asset = "USDT" if side is OrderSide.BUY else "BTC"
    needed = (quantity * price if side is OrderSide.BUY else quantity) * (1 + buffer)
    order_locked = D(0)
    if mode == "lock":
        if guarded(model, lambda: locked(ledger, lock_asset, needed)):
            order_locked = needed
    elif mode == "claim":
        order_locked = min(needed, ledger.balance(lock_asset).locked + D(1))  # sometimes more than held
    locked_before = ledger.balance(lock_asset).locked - order_locked
    settled = guarded(
        model,
        lambda: ledger.settle_fill(fill, instrument=SPOT, position=model.position, order_locked=order_locked),
    )
    event(f"spot {side.value} {'settled' if settled else 'refused'}")
    if settled is None:
        if mode == "lock" and order_locked:
            ledger.unlock(lock_asset, order_locked, timestamp=T0, reference="order")
        return
    base_fee = fill.fee if fill.fee_asset == "BTC" else D(0)
    model.expected_quantity += fill.quantity * side.sign - base_fee
    model.position = settled.position
    assert 0 <= settled.order_locked <= order_locked
    if mode == "lock":
        ledger.unlock(lock_asset, settled.order_locked, timestamp=T0, reference="order")
        assert ledger.balance(lock_asset).locked == locked_before  # the order's lock is all gone


def run_exit(model: Model, quantity: Decimal, price: Decimal) -> None:
    """An exit sells what :func:`sellable` allows and never fails for lack of base."""
    if model.position is None:
        return
    wanted = min(quantity, model.position.quantity)
    amount = sellable(model.ledger, SPOT, wanted)
    assert 0 <= amount <= wanted and amount <= model.ledger.balance("BTC").free
    if amount == 0:
        return
    fill = spot_fill(model, OrderSide.SELL, amount, price, "USDT")
    model.ledger.lock("BTC", amount, timestamp=T0, reference="exit")
    settled = model.ledger.settle_fill(fill, instrument=SPOT, position=model.position, order_locked=amount)
    assert settled.order_locked == 0
    model.position = settled.position
    model.expected_quantity -= amount


def guarded(model: Model, operation: Callable[[], T]) -> T | None:
    """Run an operation that may be refused; a refused one must change nothing (rule 3)."""
    before = state(model.ledger)
    try:
        return operation()
    except (InsufficientBalance, OrderRejected):
        assert state(model.ledger) == before
        return None


def run_spot(model: Model, operation: tuple[object, ...]) -> None:
    ledger = model.ledger
    name = operation[0]
    if name == "fill":
        run_fill(model, operation)
    elif name == "exit":
        quantity, price = operation[1], operation[2]
        assert isinstance(quantity, Decimal) and isinstance(price, Decimal)
        run_exit(model, quantity, price)
    elif name == "take":
        model.stored.extend(ledger.take_entries())
    else:
        asset, amount = operation[1], operation[2]
        assert isinstance(asset, str) and isinstance(amount, Decimal)
        moves = {
            "deposit": ledger.deposit,
            "withdraw": ledger.withdraw,
            "lock": ledger.lock,
            "unlock": ledger.unlock,
        }
        base_before = ledger.total("BTC")
        guarded(model, lambda: moves[str(name)](asset, amount, timestamp=T0, reference="op"))
        model.external_base += ledger.total("BTC") - base_before  # deposits and withdrawals of base


@PROPERTY
@given(
    operations=st.lists(spot_operations, max_size=40),
    usdt=amounts,
    btc_locked=st.sampled_from([D(0), D("0.25")]),
    rebuilt=st.booleans(),
)
def test_spot_invariants_hold_after_every_operation(
    operations: list[tuple[object, ...]], usdt: Decimal, btc_locked: Decimal, rebuilt: bool
) -> None:
    opening = {"USDT": AssetBalance("USDT", free=usdt), "BTC": AssetBalance("BTC", locked=btc_locked)}
    if rebuilt:
        model = Model(Ledger("acc", opening), start=dict(opening))
    else:
        model = Model(Ledger.fresh("acc", opening, timestamp=T0))
    model.external_base = btc_locked
    model.check()
    for operation in operations:
        run_spot(model, operation)
        model.check()


# --- properties: swaps -----------------------------------------------------------------------

swap_quantities = st.integers(min_value=1, max_value=3_000).map(lambda units: Decimal(units).scaleb(-3))
swap_prices = st.integers(min_value=5_000, max_value=15_000).map(lambda units: Decimal(units).scaleb(-2))
leverages = st.sampled_from([D(1), D(3), D(10), D(50)])

swap_operations = st.one_of(
    st.tuples(st.just("deposit"), amounts),
    st.tuples(
        st.just("trade"), st.sampled_from(OrderSide), swap_quantities, swap_prices, leverages, st.booleans()
    ),
    st.tuples(
        st.just("trade"), st.sampled_from(OrderSide), swap_quantities, swap_prices, leverages, st.booleans()
    ),
    st.tuples(st.just("leverage"), leverages),
    st.tuples(st.just("take")),
)


@dataclass
class SwapModel:
    ledger: Ledger
    stored: list[LedgerEntry] = field(default_factory=list)
    position: Position | None = None
    signed_quantity: Decimal = Decimal(0)
    external: Decimal = Decimal(0)
    trades: int = 0

    def check(self) -> None:
        with localcontext(Context(prec=80)):  # exact comparisons
            self._check()

    def _check(self) -> None:
        ledger = self.ledger
        ledger.check_invariants()
        sums = sums_of([*self.stored, *ledger.entries])
        usdt = ledger.balance("USDT")
        assert sums.get("USDT", (D(0), D(0))) == (usdt.free, usdt.locked)
        assert usdt.locked >= 0
        if not ledger.allow_negative:
            assert usdt.free >= 0
        position = self.position
        margin = position.margin if position is not None else D(0)
        assert usdt.locked == margin  # every order lock was released: what stays locked is margin
        quantity = position.quantity if position is not None else D(0)
        assert quantity == self.signed_quantity
        if position is not None:
            # Money is conserved: deposits plus realised P&L less fees (all fees in USDT here).
            assert usdt.total == self.external + position.realized_pnl - position.fees_paid
            assert position.margin >= abs(position.quantity) * (position.entry_price or 0) / position.leverage


def run_swap_trade(model: SwapModel, operation: tuple[object, ...]) -> None:
    _, side, quantity, price, leverage, with_lock = operation
    assert isinstance(side, OrderSide) and isinstance(quantity, Decimal) and isinstance(price, Decimal)
    assert isinstance(leverage, Decimal)
    ledger = model.ledger
    model.trades += 1
    fill = swap_fill(side.value, str(quantity), str(price), fee=str(quantity * price * D("0.0004")))
    fill = replace(fill, trade_id=f"t{model.trades}")
    order_locked = D(0)
    if with_lock:
        wanted = quantity * price / leverage + fill.fee
        if guarded_swap(model, lambda: locked(ledger, "USDT", wanted)):
            order_locked = wanted
    settled = guarded_swap(
        model,
        lambda: ledger.settle_fill(
            fill, instrument=SWAP, position=model.position, leverage=leverage, order_locked=order_locked
        ),
    )
    event(f"swap fill {'settled' if settled else 'refused'}")
    if settled is not None:
        model.position = settled.position
        model.signed_quantity += quantity * side.sign
        order_locked = settled.order_locked
    ledger.unlock("USDT", order_locked, timestamp=T0, reference="order")


def guarded_swap(model: SwapModel, operation: Callable[[], T]) -> T | None:
    before = state(model.ledger)
    try:
        return operation()
    except InsufficientBalance:
        assert state(model.ledger) == before
        return None


def run_swap(model: SwapModel, operation: tuple[object, ...]) -> None:
    ledger = model.ledger
    name = operation[0]
    if name == "trade":
        run_swap_trade(model, operation)
    elif name == "deposit":
        amount = operation[1]
        assert isinstance(amount, Decimal)
        ledger.deposit("USDT", amount, timestamp=T0)
        model.external += amount
    elif name == "leverage" and model.position is not None:
        leverage = operation[1]
        assert isinstance(leverage, Decimal)
        position = model.position
        changed = guarded_swap(
            model, lambda: ledger.set_leverage(position, leverage, instrument=SWAP, timestamp=T0)
        )
        model.position = changed or model.position
    elif name == "take":
        model.stored.extend(ledger.take_entries())


@PROPERTY
@given(
    operations=st.lists(swap_operations, max_size=40),
    usdt=st.integers(min_value=0, max_value=2_000).map(Decimal),
    allow_negative=st.booleans(),
)
def test_swap_invariants_hold_after_every_operation(
    operations: list[tuple[object, ...]], usdt: Decimal, allow_negative: bool
) -> None:
    model = SwapModel(Ledger.fresh("acc", {"USDT": usdt}, timestamp=T0, allow_negative=allow_negative))
    model.external = usdt
    model.check()
    for operation in operations:
        run_swap(model, operation)
        model.check()
