"""``core.records.replace`` (the domain's fast ``dataclasses.replace``) and ``core.ids.new_uuid7``."""

from __future__ import annotations

import dataclasses
import os
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptoorchestrator.core.ids import new_uuid7
from cryptoorchestrator.core.records import replace
from cryptoorchestrator.domain.ledger import AssetBalance
from cryptoorchestrator.domain.orders import Order, OrderSide, OrderStatus, OrderType

NOW = datetime(2026, 11, 23, tzinfo=UTC)
ORDER = Order(
    id="o-1", user_id=7, account_id="a", symbol="BTC/USDT", side=OrderSide.BUY, type=OrderType.LIMIT,
    quantity=Decimal("0.5"), client_order_id="c-1", created_at=NOW, updated_at=NOW, price=Decimal(100),
    fees={"BTC": Decimal("0.001")}, trade_ids=frozenset({"t"}),
)  # fmt: skip


@given(
    status=st.sampled_from(list(OrderStatus)),
    filled=st.decimals(min_value=0, max_value=10, places=8, allow_nan=False),
    reason=st.none() | st.text(max_size=20),
)
def test_replace_gives_what_dataclasses_replace_gives(
    status: OrderStatus, filled: Decimal, reason: str | None
) -> None:
    changes = {"status": status, "filled_quantity": filled, "reason": reason}
    fast = replace(ORDER, **changes)
    assert fast == dataclasses.replace(ORDER, **changes)
    assert type(fast) is Order and fast is not ORDER
    assert ORDER.status is OrderStatus.PENDING  # the original is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.status = OrderStatus.NEW  # type: ignore[misc]


def test_replace_with_no_change_copies_and_an_unknown_field_is_a_type_error() -> None:
    copy = replace(ORDER)
    assert copy == ORDER and copy is not ORDER
    with pytest.raises(TypeError, match="no field"):
        replace(ORDER, colour="red")
    assert replace(AssetBalance("BTC", Decimal(1), Decimal(0)), locked=Decimal(2)).locked == 2


def test_both_kinds_of_dataclass_are_copied_as_dataclasses_replace_copies_them() -> None:
    # Order keeps its fields in a __dict__ (copied as a dictionary), AssetBalance in slots
    # (copied by a generated function); the copy is a separate, equally frozen object.
    assert not hasattr(Order, "__slots__") and hasattr(AssetBalance, "__slots__")
    balance = AssetBalance("BTC", Decimal(1), Decimal(0))
    for record, change in ((ORDER, {"reason": "x"}), (balance, {"free": Decimal(3)})):
        copy = replace(record, **change)
        assert copy == dataclasses.replace(record, **change) and copy is not record
        with pytest.raises(dataclasses.FrozenInstanceError):
            copy.asset = "ETH"  # type: ignore[misc, union-attr]
    copy = replace(ORDER, fees={"USDT": Decimal(1)})
    assert ORDER.fees == {"BTC": Decimal("0.001")} and copy.__dict__ is not ORDER.__dict__
    with pytest.raises(TypeError, match="colour"):
        replace(balance, colour="red")


@dataclasses.dataclass(frozen=True)
class _Checked:
    value: int

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError("negative")


def test_a_dataclass_with_post_init_is_left_to_dataclasses_replace() -> None:
    assert replace(_Checked(1), value=2) == _Checked(2)
    with pytest.raises(ValueError, match="negative"):
        replace(_Checked(1), value=-1)  # __post_init__ still runs


def test_uuid7_ids_are_version_7_unique_and_increasing() -> None:
    ids = [new_uuid7() for _ in range(20_000)]  # several thousand per millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    first = uuid.UUID(ids[0])
    assert first.version == 7 and first.variant == uuid.RFC_4122
    stamp_ms = first.int >> 80
    assert abs(stamp_ms / 1000 - datetime.now(UTC).timestamp()) < 60


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_sequence() -> None:
    new_uuid7()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_uuid7().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert uuid.UUID(child).version == 7
    assert child != new_uuid7()
