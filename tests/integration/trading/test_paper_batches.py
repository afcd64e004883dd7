"""The paper group commit (``services/paper_batches``): orders of one account that arrive
together share a transaction, yet each caller gets exactly its own answer."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from cryptoorchestrator.services import paper_batches
from cryptoorchestrator.services.paper_batches import PaperQueue
from cryptoorchestrator.testing.api import assert_error, register_user

pytestmark = pytest.mark.integration


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    process = PaperQueue._process

    async def counted(self: PaperQueue, items: list[Any]) -> Any:
        sizes.append(len(items))
        return await process(self, items)

    monkeypatch.setattr(PaperQueue, "_process", counted)
    return sizes


async def test_a_burst_of_mixed_orders_each_gets_its_own_answer(trading, batch_sizes):
    user = await register_user(trading.http, "burst")
    limit_price = (await trading.price() / 2).quantize(Decimal("0.01"))
    bodies = [
        {"symbol": "BTC/USDT", "side": "buy", "quantity": "0.001", "client_order_id": "same"},
        {"symbol": "BTC/USDT", "side": "buy", "quantity": "0.001", "client_order_id": "same"},  # a repeat
        {"symbol": "BTC/USDT", "side": "buy", "quantity": "0.002", "client_order_id": "same"},  # reused id
        {"symbol": "BTC/USDT", "side": "buy", "quantity": "5"},  # more than the account holds
        {"symbol": "ETH/USDT", "side": "buy", "quantity": "0.01"},
        {"symbol": "BTC/USDT", "side": "sell", "quantity": "0.5", "reduce_only": True},  # more than held
        {
            "symbol": "BTC/USDT",
            "side": "buy",
            "type": "limit",
            "quantity": "0.001",
            "price": f"{limit_price}",
        },
        {"symbol": "ETH/USDT", "side": "buy", "quantity": "0.02"},
    ]
    answers = await asyncio.gather(
        *(trading.http.post("/api/v1/orders", headers=user.headers, json=body) for body in bodies)
    )
    assert sum(batch_sizes) == len(bodies)  # each reached the queue (how they group is timing)
    first, repeat, reused, too_big, eth, reduce, limit, eth2 = answers
    # Concurrent requests have no order: whichever body of "same" is placed first makes the
    # order, an identical body gets that order back, a different one 409.
    same = [first, repeat, reused]
    placed = [answer for answer in same if answer.status_code == 201]
    assert len({answer.json()["id"] for answer in placed}) == 1
    won = placed[0].json()
    assert won["status"] == "filled"
    assert len(placed) == (2 if won["quantity"] == "0.001" else 1)
    for answer in same:
        if answer.status_code != 201:
            assert_error(answer, 409, "CONFLICT")
    assert_error(too_big, 400, "INSUFFICIENT_BALANCE")
    assert reduce.status_code == 400, reduce.text
    assert eth.json()["status"] == eth2.json()["status"] == "filled"
    assert limit.json()["status"] == "new" and Decimal(limit.json()["filled_quantity"]) == 0
    listed = (await trading.http.get("/api/v1/orders", headers=user.headers)).json()
    assert listed["total"] == 4  # the failed ones stored nothing
    balance = (await trading.http.get("/api/v1/balance", headers=user.headers)).json()
    usdt = next(b for b in balance["balances"] if b["asset"] == "USDT")
    assert Decimal(usdt["locked"]) == Decimal(limit.json()["quantity"]) * limit_price * Decimal("1.001")
    positions = (await trading.http.get("/api/v1/positions", headers=user.headers)).json()
    held = {p["symbol"]: p["quantity"] for p in positions["items"]}
    assert held == {"BTC/USDT": won["quantity"], "ETH/USDT": "0.03"}


async def test_a_repeat_answers_the_first_order_even_when_its_body_would_fail_now(trading):
    user = await register_user(trading.http, "repeat")
    body = {"symbol": "BTC/USDT", "side": "buy", "quantity": "0.5", "client_order_id": "big-1"}
    first = await trading.http.post("/api/v1/orders", headers=user.headers, json=body)
    assert first.status_code == 201, first.text
    again = await trading.http.post("/api/v1/orders", headers=user.headers, json=body)
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]


class _Service:
    """Stands in for the order service: counts the batches a queue hands over."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def _after_booking(self, account: Any, booking: Any) -> None:
        return None


async def test_linger_waits_for_expected_callers_and_never_for_a_lone_one(monkeypatch):
    service = _Service()
    queue = PaperQueue(service, "acc")  # type: ignore[arg-type]

    async def process(items: list[Any]) -> Any:
        service.batches.append(list(items))
        await asyncio.sleep(0.002)  # the commit
        return [item.draft for item in items], paper_batches.Booking()

    monkeypatch.setattr(queue, "_process", process)
    account = type("A", (), {"id": "acc"})()

    def item(n: int) -> Any:
        return paper_batches.PaperItem(account, None, n, Decimal(1), None)  # type: ignore[arg-type]

    # A lone caller: answered without waiting for anybody.
    assert await asyncio.wait_for(queue.submit(item(0)), 0.5) == 0
    # Four callers at once, then the same four again one loop turn apart: the second round is
    # gathered into one batch, because the last batch held four.
    assert await asyncio.gather(*(queue.submit(item(n)) for n in range(1, 5))) == [1, 2, 3, 4]

    async def later(n: int) -> Any:
        await asyncio.sleep(0.0002 * n)
        return await queue.submit(item(n))

    assert await asyncio.gather(*(later(n) for n in range(5, 9))) == [5, 6, 7, 8]
    assert [len(batch) for batch in service.batches] == [1, 4, 4]
    # When fewer come than expected, the batch goes after the linger gap, not later.
    started = asyncio.get_running_loop().time()
    assert await queue.submit(item(9)) == 9
    assert asyncio.get_running_loop().time() - started < 0.5


async def test_linger_counts_its_gap_from_the_last_arrival(monkeypatch):
    """Callers that keep arriving within the gap of each other are gathered even when they take
    several gaps in all; the drain task is woken once for the batch, not once per arrival."""
    monkeypatch.setattr(paper_batches, "LINGER_GAP", 0.3)
    service = _Service()
    queue = PaperQueue(service, "acc")  # type: ignore[arg-type]

    async def process(items: list[Any]) -> Any:
        service.batches.append(list(items))
        return [item.draft for item in items], paper_batches.Booking()

    monkeypatch.setattr(queue, "_process", process)
    account = type("A", (), {"id": "acc"})()

    def item(n: int) -> Any:
        return paper_batches.PaperItem(account, None, n, Decimal(1), None)  # type: ignore[arg-type]

    assert await asyncio.gather(*(queue.submit(item(n)) for n in range(4))) == [0, 1, 2, 3]
    wakeups = 0
    settle = queue._gap_passed

    def counted(arrival: Any) -> None:
        nonlocal wakeups
        wakeups += 1
        settle(arrival)

    monkeypatch.setattr(queue, "_gap_passed", counted)

    async def later(n: int) -> Any:
        await asyncio.sleep(0.15 * (n - 4))  # half the gap apart, one and a half gaps in all
        return await queue.submit(item(n))

    started = asyncio.get_running_loop().time()
    assert await asyncio.gather(*(later(n) for n in range(4, 8))) == [4, 5, 6, 7]
    assert [len(batch) for batch in service.batches] == [4, 4]
    assert asyncio.get_running_loop().time() - started < 1.5  # went when the fourth came
    assert wakeups <= 2  # the timer looked again at most once or twice, the arrivals never woke it


CASES = {
    "invalid json": {"content": b"{not json", "headers": {"content-type": "application/json"}},
    "empty": {"content": b"", "headers": {"content-type": "application/json"}},
    "no content type": {"content": b'{"symbol": "BTC/USDT", "side": "buy", "quantity": "0.001"}'},
    "text": {"content": b'{"symbol": "BTC/USDT", "side": "buy", "quantity": "0.001"}',
             "headers": {"content-type": "text/plain"}},
    "missing": {"json": {"side": "buy", "quantity": "1"}},
    "bad decimal": {"json": {"symbol": "BTC/USDT", "side": "buy", "quantity": "abc"}},
    "extra": {"json": {"symbol": "BTC/USDT", "side": "buy", "quantity": "1", "zzz": 1}},
    "array": {"json": [1]},
    "bad side": {"json": {"symbol": "BTC/USDT", "side": "up", "quantity": "1"}},
    "unknown symbol": {"json": {"symbol": "NOPE/USDT", "side": "buy", "quantity": "1"}},
    "float": {"json": {"symbol": "BTC/USDT", "side": "buy", "quantity": 0.001}},
    "camel case": {"json": {"symbol": "BTC/USDT", "side": "buy", "quantity": "0.001", "reduceOnly": False}},
}  # fmt: skip


def _comparable(response: Any) -> tuple[int, Any]:
    body = response.json()
    if isinstance(body, dict):
        for key in ("id", "order_id", "client_order_id", "account_id", "created_at", "updated_at",
                    "exchange_order_id", "average_price", "fees"):  # fmt: skip
            body.pop(key, None)
        body.get("error", {}).pop("request_id", None)
    return response.status_code, body


async def test_the_fast_path_answers_exactly_as_fastapi_does(app_factory, monkeypatch):
    """POST /orders skips FastAPI's dependency solving for its common case
    (``place_order.fast_path``); every answer, errors included, is the one FastAPI gives."""
    from cryptoorchestrator.api.routers import orders as orders_router
    from tests.conftest import client_for

    answered_fast: list[bool] = []
    shortcut = orders_router.place_order.fast_path

    async def counted(request: Any) -> Any:
        response = await shortcut(request)
        answered_fast.append(response is not None)
        return response

    monkeypatch.setattr(orders_router.place_order, "fast_path", counted)
    answers: dict[str, dict[str, tuple[int, Any]]] = {}
    for mode in ("fast", "fastapi"):
        if mode == "fastapi":
            monkeypatch.delattr(orders_router.place_order, "fast_path")
        app, _ = await app_factory(synthetic_data=True, synthetic_symbols=["BTC/USDT"], paper_poll_seconds=0)
        async with client_for(app) as http:
            user = await register_user(http, f"mode-{mode}")
            answers[mode] = {}
            for name, case in CASES.items():
                headers = {**user.headers, **case.get("headers", {})}
                kwargs = {key: value for key, value in case.items() if key != "headers"}
                for path in ("/api/v1/orders", "/api/v1/trading/orders"):
                    answers[mode][f"{path} {name}"] = _comparable(
                        await http.post(path, headers=headers, **kwargs)
                    )
            anonymous = await http.post("/api/v1/orders", json=CASES["float"]["json"])
            answers[mode]["anonymous"] = _comparable(anonymous)
    assert answers["fast"] == answers["fastapi"]
    assert answered_fast.count(True) == 4  # float and camel case, on both paths
    assert answers["fast"]["/api/v1/orders float"][0] == 201
    assert answers["fast"]["anonymous"][0] == 401
