"""``order_json`` (the answer of every order route) writes exactly what ``OrderOut``'s own
serializer writes for the same order, whatever its amounts, optional fields and timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from cryptoorchestrator.api.routers.orders import order_json, order_out
from cryptoorchestrator.domain.orders import Order, OrderSide, OrderStatus, OrderType, TimeInForce
from cryptoorchestrator.schemas.trading import OrderOut

PLAIN = st.decimals(allow_nan=False, allow_infinity=False, min_value=0, max_value=10**12, places=None)
SCALED = st.builds(  # tiny and exponent-written values: "1E-7", "1.0E+3"
    lambda digits, exponent: Decimal(digits).scaleb(exponent),
    st.integers(min_value=1, max_value=10**6),
    st.integers(min_value=-20, max_value=6),
)
AMOUNTS = PLAIN | SCALED
TEXT = st.text(max_size=20)
INSTANTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
) | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda moment: moment.replace(tzinfo=timezone(timedelta(hours=2)))
)


@st.composite
def orders(draw: st.DrawFn) -> Order:
    quantity = draw(AMOUNTS)
    return Order(
        id=draw(TEXT),
        user_id=1,
        account_id=draw(TEXT),
        symbol=draw(TEXT),
        side=draw(st.sampled_from(OrderSide)),
        type=draw(st.sampled_from(OrderType)),
        quantity=quantity,
        client_order_id=draw(TEXT),
        created_at=draw(INSTANTS),
        updated_at=draw(INSTANTS),
        price=draw(st.none() | AMOUNTS),
        stop_price=draw(st.none() | AMOUNTS),
        time_in_force=draw(st.sampled_from(TimeInForce)),
        reduce_only=draw(st.booleans()),
        stop_loss=draw(st.none() | AMOUNTS),
        take_profit=draw(st.none() | AMOUNTS),
        status=draw(st.sampled_from(OrderStatus)),
        filled_quantity=draw(st.none() | AMOUNTS) or Decimal(0),
        average_price=draw(st.none() | AMOUNTS),
        fees=draw(st.dictionaries(TEXT, AMOUNTS, max_size=3)),
        exchange_order_id=draw(st.none() | TEXT),
        bot_id=draw(st.none() | TEXT),
        parent_id=draw(st.none() | TEXT),
        oco_group=draw(st.none() | TEXT),
        triggered=draw(st.booleans()),
        reason=draw(st.none() | TEXT),
    )


@given(orders())
def test_order_json_is_what_the_response_model_writes(order: Order) -> None:
    model = order_out(order)
    assert order_json(order) == model.__pydantic_serializer__.to_json(model)
    validated = OrderOut.model_validate(model.model_dump())
    assert order_json(order) == validated.model_dump_json().encode()
