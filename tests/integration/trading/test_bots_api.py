"""/bots: CRUD, filters, state transitions and their errors, events, status figures, seed 001's
/strategies/{id}/start|stop, seed 004's /bot/*, validation, idempotency and ownership.

No bot runner runs here: tests play its part by writing what the runner owns (status,
started_at, leases, signal events) through the repositories."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest

from cryptoorchestrator.domain.bots import BotEvent, BotStatus
from cryptoorchestrator.domain.orders import OrderSide
from cryptoorchestrator.exchanges.client import CcxtExchangeClient
from cryptoorchestrator.exchanges.ratelimit import RateBudgetRegistry
from cryptoorchestrator.services.bots import utc_midnight
from cryptoorchestrator.services.orders import OrderRequest
from cryptoorchestrator.testing.api import assert_error, register_user
from cryptoorchestrator.testing.fake_exchange import FakeBinance
from cryptoorchestrator.testing.fake_exchange_venue import SimulatedBinanceSpot
from cryptoorchestrator.testing.ownership import OwnedRoute, assert_owner_only
from tests.conftest import client_for
from tests.integration.trading.conftest import Trading

pytestmark = pytest.mark.integration

MISSING = "00000000-0000-0000-0000-000000000000"
RUNNER = "host:1:test"
TTL = timedelta(seconds=15)


@pytest.fixture
async def trading(app_factory):
    """The trading fixture with the bot runner off: these tests check what the service writes;
    the runner's own behaviour is tested with the runner (tests/.../test_bot_runner*)."""
    app, container = await app_factory(
        synthetic_data=True,
        synthetic_symbols=["BTC/USDT", "ETH/USDT"],
        paper_poll_seconds=0,
        runner_enabled=False,
    )
    async with client_for(app) as http:
        yield Trading(http, container)


class Recorder:
    """A supervisor that remembers whom it was asked to wake."""

    def __init__(self) -> None:
        self.woken: list[str] = []

    async def wake(self, bot_id: str) -> None:
        self.woken.append(bot_id)


@pytest.fixture
def supervisor(trading) -> Recorder:
    recorder = Recorder()
    trading.container.bots.supervisor = recorder
    return recorder


async def create(trading, headers, expect: int = 201, **body):
    values = {"name": "Trend", "strategy": {"type": "sma_cross", "params": {"fast": 5}}, "symbol": "BTCUSDT"}
    values.update(body)
    values = {key: value for key, value in values.items() if value is not None}  # None: leave it out
    trading.container.clock.advance(1)  # creation times differ (listings are newest first)
    response = await trading.http.post("/api/v1/bots", headers=headers, json=values)
    assert response.status_code == expect, response.text
    return response.json()


async def post(trading, headers, path, json=None):
    return await trading.http.post(f"/api/v1{path}", headers=headers, json=json)


async def act_as_runner(trading, bot_id: str, **fields) -> None:
    async with trading.container.uow_factory() as uow:
        await uow.bots.update(bot_id, now=trading.container.clock.now(), **fields)
        await uow.commit()


async def hold_lease(trading, bot_id: str, runner: str = RUNNER) -> None:
    async with trading.container.uow_factory() as uow:
        assert await uow.bot_leases.acquire(bot_id, runner, now=trading.container.clock.now(), ttl=TTL)
        await uow.commit()


async def stored(trading, bot_id: str):
    async with trading.container.uow_factory() as uow:
        return await uow.bots.get(bot_id)


# --- CRUD and filters ----------------------------------------------------------------------------


async def test_create_read_and_defaults(trading):
    user = await register_user(trading.http, "maker")
    bot = await create(trading, user.headers, stop_loss="0.03", risk={"leverage": 2})
    assert bot["name"] == "Trend" and bot["strategy_type"] == "sma_cross" and bot["strategy_id"] is None
    assert bot["params"] == {"fast": 5, "slow": 30, "allow_short": False}  # defaults filled in
    assert bot["symbols"] == ["BTC/USDT"] and bot["symbol"] == "BTC/USDT"  # BTCUSDT resolved
    assert bot["timeframe"] == "1h" and bot["mode"] == "paper" and bot["exchange"] == trading.exchange
    assert bot["status"] == "stopped" and bot["desired"] == "stopped" and bot["error"] is None
    assert bot["is_default"] is True  # the first bot
    assert bot["risk"] == {
        "risk_per_trade": "0.01",
        "stop_loss": "0.03",
        "take_profit": None,
        "trailing_stop": None,
        "leverage": "2",
        "max_open_positions": 1,
        "max_position_fraction": "1",
    }
    account = (await trading.http.get("/api/v1/account", headers=user.headers)).json()
    assert bot["account_id"] == account["id"]
    assert bot["created_at"].endswith("Z") and bot["started_at"] is None
    fetched = await trading.http.get(f"/api/v1/bots/{bot['id']}", headers=user.headers)
    assert fetched.json() == bot
    unversioned = await trading.http.get(f"/api/bots/{bot['id']}", headers=user.headers)
    assert unversioned.json() == bot
    events = (await trading.http.get(f"/api/v1/bots/{bot['id']}/events", headers=user.headers)).json()
    assert [(e["kind"], e["data"]["action"]) for e in events["items"]] == [("state", "create")]


async def test_create_from_a_saved_strategy_with_several_symbols(trading):
    user = await register_user(trading.http, "saver")
    saved = await trading.http.post(
        "/api/v1/strategies",
        headers=user.headers,
        json={"name": "Slow cross", "strategy_type": "ema_cross", "params": {"fast": 8, "slow": 21}},
    )
    first = await create(trading, user.headers, name="first")
    bot = await create(
        trading,
        user.headers,
        name="Portfolio",
        strategy=None,
        symbol=None,
        strategy_id=saved.json()["id"],
        params={"slow": 50},
        symbols=["ETH-USDT", "BTC_USDT"],
        timeframe="4h",
        mode="PAPER",
        exchange=trading.exchange,
    )
    assert bot["strategy_id"] == saved.json()["id"] and bot["strategy_type"] == "ema_cross"
    assert bot["params"] == {"fast": 8, "slow": 50, "allow_short": False}
    assert bot["symbols"] == ["ETH/USDT", "BTC/USDT"] and bot["timeframe"] == "4h"
    assert first["is_default"] is True and bot["is_default"] is False
    # Seed 000/002 spellings: trading_pair, strategy by name, camelCase risk shortcuts.
    seed = await create(
        trading,
        user.headers,
        name="Seed",
        strategy="rsi_momentum",
        symbol=None,
        tradingPair="ETH/USDT",
        riskPerTrade=0.02,
        takeProfit="0.06",
    )
    assert seed["strategy_type"] == "rsi_momentum" and seed["symbol"] == "ETH/USDT"
    assert seed["risk"]["risk_per_trade"] == "0.02" and seed["risk"]["take_profit"] == "0.06"


async def test_list_filters_and_pagination(trading):
    user = await register_user(trading.http, "lister")
    other = await register_user(trading.http, "other-lister")  # before create() moves the clock
    a = await create(trading, user.headers, name="a")
    b = await create(trading, user.headers, name="b")
    c = await create(trading, user.headers, name="c")
    listed = (await trading.http.get("/api/v1/bots", headers=user.headers)).json()
    assert [x["id"] for x in listed["items"]] == [c["id"], b["id"], a["id"]]  # newest first
    assert (listed["total"], listed["limit"], listed["offset"]) == (3, 50, 0)
    page = (await trading.http.get("/api/v1/bots?limit=1&offset=1", headers=user.headers)).json()
    assert [x["id"] for x in page["items"]] == [b["id"]] and page["total"] == 3
    await post(trading, user.headers, f"/bots/{b['id']}/start")

    async def ids(query: str) -> list[str]:
        response = await trading.http.get(f"/api/v1/bots?{query}", headers=user.headers)
        assert response.status_code == 200, response.text
        return [x["id"] for x in response.json()["items"]]

    assert await ids("status=starting") == [b["id"]]
    assert await ids("status=stopped") == [c["id"], a["id"]]
    assert await ids("status=inactive") == [c["id"], a["id"]]  # seed 003's name
    assert await ids("status=running") == []
    await act_as_runner(trading, b["id"], status=BotStatus.RUNNING)
    assert await ids("status=active") == [b["id"]]
    assert await ids(f"exchange={trading.exchange.upper()}") == [c["id"], b["id"], a["id"]]
    assert await ids("exchange=kraken") == []
    assert await ids("mode=paper") == [c["id"], b["id"], a["id"]]
    assert await ids("mode=live") == []
    assert_error(
        await trading.http.get("/api/v1/bots?status=dancing", headers=user.headers), 422, "VALIDATION_ERROR"
    )
    assert_error(
        await trading.http.get("/api/v1/bots?mode=demo", headers=user.headers), 422, "VALIDATION_ERROR"
    )
    assert (await trading.http.get("/api/v1/bots", headers=other.headers)).json()["total"] == 0


@pytest.fixture
async def live(app_factory, clock):
    """An app whose exchange accounts trade on the fake Binance (the account says bybit, so the
    exchange filter can tell it from the paper account's binance)."""
    venue = SimulatedBinanceSpot(clock=clock)
    fake = FakeBinance(venue=venue)
    registry = RateBudgetRegistry()

    def venue_factory(account, credentials):
        return CcxtExchangeClient(fake, budget_registry=registry, owns_exchange=False)

    app, container = await app_factory(
        venue_factory=venue_factory,
        synthetic_data=True,
        synthetic_symbols=["BTC/USDT"],
        paper_poll_seconds=0,
        runner_enabled=False,
    )
    async with client_for(app) as http:
        user = await register_user(http, "live")
        account = await container.accounts.create_exchange_account(
            user.id, name="main", exchange="bybit", credentials_encrypted=None
        )
        yield http, user, account
    await fake.close()


async def test_a_bot_on_an_exchange_account_is_live(live):
    http, user, account = live
    body = {"name": "Live", "strategy": "sma_cross", "symbol": "BTCUSDT", "account_id": account.id}
    created = await http.post("/api/v1/bots", headers=user.headers, json={**body, "mode": "live"})
    assert created.status_code == 201, created.text
    bot = created.json()
    assert bot["mode"] == "live" and bot["exchange"] == "bybit" and bot["account_id"] == account.id
    paper = await http.post(
        "/api/v1/bots", headers=user.headers, json={**body, "name": "P", "account_id": "paper"}
    )
    assert paper.status_code == 201, paper.text

    async def names(query: str) -> list[str]:
        return [
            x["name"] for x in (await http.get(f"/api/v1/bots?{query}", headers=user.headers)).json()["items"]
        ]

    assert await names("mode=live") == ["Live"]
    assert await names("mode=paper") == ["P"]
    assert await names("exchange=bybit") == ["Live"]
    assert await names("exchange=binance&mode=paper") == ["P"]
    wrong = await http.post("/api/v1/bots", headers=user.headers, json={**body, "name": "W", "mode": "paper"})
    error = assert_error(wrong, 400, "BAD_REQUEST")
    assert "paper account" in error["message"]
    other_exchange = await http.post(
        "/api/v1/bots", headers=user.headers, json={**body, "name": "W", "exchange": "kraken"}
    )
    assert_error(other_exchange, 400, "BAD_REQUEST")


async def test_patch_rules(trading, supervisor):
    user = await register_user(trading.http, "patcher")
    bot = await create(trading, user.headers)
    other = await create(trading, user.headers, name="Other")
    url = f"/api/v1/bots/{bot['id']}"
    changed = await trading.http.patch(
        url,
        headers=user.headers,
        json={"params": {"slow": 40}, "symbols": ["ETHUSDT", "BTC/USDT"], "timeframe": "15m"},
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["params"] == {"fast": 5, "slow": 40, "allow_short": False}  # merged
    assert body["symbols"] == ["ETH/USDT", "BTC/USDT"] and body["timeframe"] == "15m"
    retyped = await trading.http.patch(url, headers=user.headers, json={"strategy": {"type": "ema_cross"}})
    assert retyped.json()["strategy_type"] == "ema_cross"
    assert retyped.json()["params"] == {"fast": 10, "slow": 30, "allow_short": False}  # replaced
    taken = await trading.http.patch(url, headers=user.headers, json={"name": "Other"})
    assert_error(taken, 409, "CONFLICT")
    assert_error(
        await trading.http.patch(url, headers=user.headers, json={"timeframe": "7m"}),
        422,
        "INVALID_TIMEFRAME",
    )
    bad_risk = await trading.http.patch(url, headers=user.headers, json={"risk": {"leverage": 0}})
    assert_error(bad_risk, 422, "VALIDATION_ERROR")
    null_risk = await trading.http.patch(url, headers=user.headers, json={"risk": {"risk_per_trade": None}})
    assert_error(null_risk, 422, "VALIDATION_ERROR")
    # Running: the name and the risk may change (the runner is woken), the strategy may not.
    await post(trading, user.headers, f"/bots/{bot['id']}/start")
    supervisor.woken.clear()
    running = await trading.http.patch(
        url, headers=user.headers, json={"name": "Renamed", "risk": {"stop_loss": 0.02, "leverage": 3}}
    )
    assert running.status_code == 200, running.text
    assert running.json()["name"] == "Renamed" and running.json()["risk"]["stop_loss"] == "0.02"
    assert supervisor.woken == [bot["id"]]
    removed = await trading.http.patch(url, headers=user.headers, json={"risk": {"stop_loss": None}})
    assert removed.json()["risk"]["stop_loss"] is None and removed.json()["risk"]["leverage"] == "3"
    for change in ({"params": {"fast": 6}}, {"symbol": "ETH/USDT"}, {"timeframe": "1d"}, {"strategy": "dca"}):
        refused = await trading.http.patch(url, headers=user.headers, json=change)
        error = assert_error(refused, 409, "CONFLICT")
        assert "stop it before" in error["message"]
    # Unchanged values are no change at all, running or not.
    same = await trading.http.patch(url, headers=user.headers, json={"timeframe": "15m"})
    assert same.status_code == 200
    # The default moves.
    moved = await trading.http.patch(
        f"/api/v1/bots/{other['id']}", headers=user.headers, json={"is_default": True}
    )
    assert moved.json()["is_default"] is True
    assert (await trading.http.get(url, headers=user.headers)).json()["is_default"] is False
    events = (await trading.http.get(f"{url}/events?kind=state", headers=user.headers)).json()
    assert [e["data"]["action"] for e in events["items"]][:3] == ["update", "update", "start"]


async def test_delete_rules_and_default_promotion(trading):
    user = await register_user(trading.http, "deleter")
    first = await create(trading, user.headers, name="first")
    second = await create(trading, user.headers, name="second")
    third = await create(trading, user.headers, name="third")
    await post(trading, user.headers, f"/bots/{first['id']}/start")
    running = await trading.http.delete(f"/api/v1/bots/{first['id']}", headers=user.headers)
    error = assert_error(running, 409, "CONFLICT")
    assert "stop it first" in error["message"]
    # A runner still winding it down: 409 until it lets go.
    await hold_lease(trading, first["id"])
    stopping = await post(trading, user.headers, f"/bots/{first['id']}/stop")
    assert stopping.json()["status"] == "stopping"
    assert_error(
        await trading.http.delete(f"/api/v1/bots/{first['id']}", headers=user.headers), 409, "CONFLICT"
    )
    async with trading.container.uow_factory() as uow:
        await uow.bot_leases.release(first["id"], RUNNER)
        await uow.commit()
    gone = await trading.http.delete(f"/api/v1/bots/{first['id']}", headers=user.headers)
    assert gone.status_code == 204
    assert_error(
        await trading.http.get(f"/api/v1/bots/{first['id']}", headers=user.headers), 404, "NOT_FOUND"
    )
    assert_error(
        await trading.http.delete(f"/api/v1/bots/{first['id']}", headers=user.headers), 404, "NOT_FOUND"
    )
    # The oldest remaining bot became the default.
    assert (await trading.http.get(f"/api/v1/bots/{second['id']}", headers=user.headers)).json()["is_default"]
    assert not (await trading.http.get(f"/api/v1/bots/{third['id']}", headers=user.headers)).json()[
        "is_default"
    ]


# --- state transitions ----------------------------------------------------------------------------


async def test_start_pause_resume_stop_and_their_errors(trading, supervisor):
    user = await register_user(trading.http, "steerer")
    bot = await create(trading, user.headers)
    path = f"/bots/{bot['id']}"
    for action in ("stop", "pause", "resume"):
        assert_error(await post(trading, user.headers, f"{path}/{action}"), 400, "BOT_NOT_ACTIVE")
    started = await post(trading, user.headers, f"{path}/start")
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["message"] == "Bot started successfully" and body["bot_id"] == bot["id"]
    assert (body["status"], body["desired"]) == ("starting", "running")
    assert_error(await post(trading, user.headers, f"{path}/start"), 400, "BOT_ALREADY_ACTIVE")
    paused = (await post(trading, user.headers, f"{path}/pause")).json()
    assert paused["desired"] == "paused" and paused["status"] == "starting"  # the runner sets status
    again = await post(trading, user.headers, f"{path}/pause")
    assert again.status_code == 200 and again.json()["desired"] == "paused"
    assert_error(await post(trading, user.headers, f"{path}/start"), 400, "BOT_ALREADY_ACTIVE")
    resumed = (await post(trading, user.headers, f"{path}/resume")).json()
    assert resumed["desired"] == "running"
    assert (await post(trading, user.headers, f"{path}/resume")).status_code == 200
    # No runner holds it and nothing is to be closed: the stop is immediate.
    stopped = (await post(trading, user.headers, f"{path}/stop")).json()
    assert (stopped["status"], stopped["desired"]) == ("stopped", "stopped")
    assert stopped["bot"]["stopped_at"] is not None
    assert_error(await post(trading, user.headers, f"{path}/stop"), 400, "BOT_NOT_ACTIVE")
    assert_error(await post(trading, user.headers, f"{path}/pause"), 400, "BOT_NOT_ACTIVE")
    assert supervisor.woken == [bot["id"]] * 4  # start, pause, resume, stop: repeats wake nobody
    # Closing positions is left to a runner even when none holds the bot (the woken one takes it).
    await post(trading, user.headers, f"{path}/start")
    closing = (await post(trading, user.headers, f"{path}/stop", {"close_positions": True})).json()
    assert (closing["status"], closing["desired"]) == ("stopping", "stopped")
    assert (await stored(trading, bot["id"])).state == {"close_positions": True}
    assert supervisor.woken == [bot["id"]] * 6
    events = (await trading.http.get(f"/api/v1{path}/events", headers=user.headers)).json()
    kinds = [(e["kind"], e["data"].get("action")) for e in events["items"]]
    assert kinds == [
        ("state", action) for action in ("stop", "start", "stop", "resume", "pause", "start", "create")
    ]
    assert events["items"][0]["data"]["close_positions"] is True
    assert events["items"][2]["data"]["close_positions"] is False
    # Not held: it may be deleted (nothing runs it).
    assert (await trading.http.delete(f"/api/v1{path}", headers=user.headers)).status_code == 204


async def test_stop_with_a_runner_holding_the_bot_leaves_the_stop_to_it(trading, supervisor):
    user = await register_user(trading.http, "held")
    bot = await create(trading, user.headers)
    path = f"/bots/{bot['id']}"
    await post(trading, user.headers, f"{path}/start")
    await hold_lease(trading, bot["id"])
    now = trading.container.clock.now()
    await act_as_runner(
        trading, bot["id"], status=BotStatus.RUNNING, started_at=now, state={"BTC/USDT": {"best": "1"}}
    )
    stopping = (await post(trading, user.headers, f"{path}/stop", {"close_positions": True})).json()
    assert (stopping["status"], stopping["desired"]) == ("stopping", "stopped")
    record = await stored(trading, bot["id"])
    assert record.state == {"BTC/USDT": {"best": "1"}, "close_positions": True}
    assert supervisor.woken[-1] == bot["id"]
    # The runner finishes; a new start clears nothing it should not.
    await act_as_runner(trading, bot["id"], status=BotStatus.STOPPED, stopped_at=now)
    again = (await post(trading, user.headers, f"{path}/start")).json()
    assert again["status"] == "starting" and again["bot"]["error"] is None
    stop_plain = (await post(trading, user.headers, f"{path}/stop")).json()
    assert stop_plain["status"] == "stopping"
    assert (await stored(trading, bot["id"])).state["close_positions"] is False


async def test_a_bot_in_error_may_be_started_again(trading):
    user = await register_user(trading.http, "errored")
    bot = await create(trading, user.headers)
    path = f"/bots/{bot['id']}"
    await post(trading, user.headers, f"{path}/start")
    await act_as_runner(trading, bot["id"], status=BotStatus.ERROR, error="exchange refused the key")
    shown = (await trading.http.get(f"/api/v1{path}", headers=user.headers)).json()
    assert shown["status"] == "error" and shown["error"] == "exchange refused the key"
    restarted = (await post(trading, user.headers, f"{path}/start")).json()
    assert restarted["status"] == "starting" and restarted["bot"]["error"] is None


# --- status and events --------------------------------------------------------------------------------


async def test_status_figures(trading):
    user = await register_user(trading.http, "figures")
    bot = await create(trading, user.headers, symbols=["BTC/USDT"], symbol=None)
    other = await create(trading, user.headers, name="Other", symbols=["ETH/USDT"], symbol=None)
    url = f"/api/v1/bots/{bot['id']}/status"
    idle = (await trading.http.get(url, headers=user.headers)).json()
    assert idle == {
        "bot_id": bot["id"],
        "status": "stopped",
        "desired": "stopped",
        "error": None,
        "mode": "paper",
        "uptime_seconds": 0,
        "started_at": None,
        "stopped_at": None,
        "last_candle_at": None,
        "signals_today": 0,
        "daily_pnl": "0",
        "daily_trades": 0,
        "win_rate": None,
        "open_positions": [],
    }
    orders = trading.container.orders

    async def trade(symbol: str, side: OrderSide, quantity: str, bot_id: str) -> None:
        request = OrderRequest(symbol=symbol, side=side, quantity=Decimal(quantity), bot_id=bot_id)
        await orders.place(user.id, request)

    await trade("BTC/USDT", OrderSide.BUY, "0.05", bot["id"])
    price = await trading.price()
    await trading.bar(low=price, high=price * Decimal("1.1"), close=price * Decimal("1.1"))
    await trade("BTC/USDT", OrderSide.SELL, "0.05", bot["id"])
    await trade("BTC/USDT", OrderSide.BUY, "0.01", bot["id"])
    await trade("ETH/USDT", OrderSide.BUY, "0.1", other["id"])  # another bot's symbol and fills
    # The runner's part: running since now, three signals (one of them yesterday).
    await post(trading, user.headers, f"/bots/{bot['id']}/start")
    clock = trading.container.clock
    now = clock.now()
    await act_as_runner(trading, bot["id"], status=BotStatus.RUNNING, started_at=now, last_candle_at=now)
    async with trading.container.uow_factory() as uow:
        for moment in (utc_midnight(now) - timedelta(seconds=1), now, now):
            await uow.bot_events.add(BotEvent(None, bot["id"], user.id, "signal", "enter long", {}, moment))
        await uow.commit()
    clock.advance(90)
    figures = (await trading.http.get(url, headers=user.headers)).json()
    fills = (await trading.http.get(f"/api/v1/trades?bot_id={bot['id']}", headers=user.headers)).json()
    realized = sum(Decimal(f["realized_pnl"]) for f in fills["items"] if f["realized_pnl"] is not None)
    assert realized > 0
    assert figures["status"] == "running" and figures["uptime_seconds"] == 90
    assert figures["signals_today"] == 2
    assert Decimal(figures["daily_pnl"]) == realized
    assert figures["daily_trades"] == fills["total"] == 3
    assert figures["win_rate"] == 100.0
    assert [(p["symbol"], p["side"], p["quantity"]) for p in figures["open_positions"]] == [
        ("BTC/USDT", "long", "0.01")
    ]
    other_figures = (
        await trading.http.get(f"/api/v1/bots/{other['id']}/status", headers=user.headers)
    ).json()
    assert other_figures["daily_trades"] == 1 and other_figures["daily_pnl"] == "0"
    assert [p["symbol"] for p in other_figures["open_positions"]] == ["ETH/USDT"]
    # Events: newest first, filtered by kind, paged.
    events = await trading.http.get(
        f"/api/v1/bots/{bot['id']}/events?kind=signal&limit=2", headers=user.headers
    )
    body = events.json()
    assert body["total"] == 3 and len(body["items"]) == 2 and body["limit"] == 2
    assert body["items"][0]["id"] > body["items"][1]["id"]
    assert all(e["kind"] == "signal" and e["bot_id"] == bot["id"] for e in body["items"])
    bad = await trading.http.get(f"/api/v1/bots/{bot['id']}/events?kind=party", headers=user.headers)
    assert_error(bad, 422, "VALIDATION_ERROR")


# --- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"strategy": None}, ["body"]),
        ({"strategy_id": MISSING}, ["body"]),  # both strategy and strategy_id
        ({"symbol": None}, ["body"]),
        ({"symbols": ["BTC/USDT"]}, ["body"]),  # both symbol and symbols
        ({"strategy": {"type": "sma_cross", "params": {"fast": 0}}}, ["body", "params", "fast"]),
        ({"strategy": {"type": "sma_cross", "params": {"fast": 20, "slow": 10}}}, ["body", "params", "slow"]),
        ({"risk": {"risk_per_trade": 2}}, ["body", "risk", "risk_per_trade"]),
        ({"risk": {"leverage": 200}}, ["body", "risk", "leverage"]),
        ({"risk": {"max_open_positions": 0}}, ["body", "risk", "max_open_positions"]),
        ({"risk": {"max_open_positions": 101}}, ["body", "risk", "max_open_positions"]),
        ({"risk": {"max_position_fraction": 3}}, ["body", "risk", "max_position_fraction"]),
        ({"risk": {"position_size": 0.1}}, ["body", "risk", "position_size"]),
        ({"stop_loss": 1.5}, ["body", "stop_loss"]),
        ({"stop_loss": 0.02, "risk": {"stop_loss": 0.03}}, ["body"]),
        ({"symbols": ["BTCUSDT", "BTC/USDT"], "symbol": None}, ["body", "symbols"]),
        ({"name": ""}, ["body", "name"]),
        ({"colour": "blue"}, ["body", "colour"]),
        ({"mode": "demo"}, ["body", "mode"]),
    ],
)
async def test_validation_errors_name_the_field(trading, body, loc):
    user = await register_user(trading.http, "validator")
    response = await trading.http.post(
        "/api/v1/bots",
        headers=user.headers,
        json={"name": "V", "strategy": {"type": "sma_cross"}, "symbol": "BTC/USDT", **body},
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert any(e["loc"][: len(loc)] == loc for e in error["details"]["errors"]), error


async def test_references_that_do_not_resolve(trading):
    user = await register_user(trading.http, "resolver")
    other = await register_user(trading.http, "stranger")
    theirs = await trading.http.post(
        "/api/v1/strategies", headers=other.headers, json={"name": "Theirs", "strategy_type": "sma_cross"}
    )
    cases = [
        ({"strategy": {"type": "nope"}}, 404, "STRATEGY_NOT_FOUND"),
        ({"strategy": None, "strategy_id": MISSING}, 404, "STRATEGY_NOT_FOUND"),
        ({"strategy": None, "strategy_id": theirs.json()["id"]}, 404, "STRATEGY_NOT_FOUND"),
        ({"symbol": "NOPE/USDT"}, 404, "INVALID_SYMBOL"),
        ({"timeframe": "7m"}, 422, "INVALID_TIMEFRAME"),
        ({"account_id": MISSING}, 404, "NOT_FOUND"),
        ({"mode": "live"}, 400, "BAD_REQUEST"),
        ({"exchange": "kraken"}, 400, "BAD_REQUEST"),
    ]
    for extra, status, code in cases:
        body = {"name": "R", "strategy": {"type": "sma_cross"}, "symbol": "BTC/USDT", **extra}
        error = assert_error(
            await trading.http.post("/api/v1/bots", headers=user.headers, json=body), status, code
        )
        if extra.get("mode") == "live":
            assert "exchange account" in error["message"]
    other_account = await trading.container.accounts.paper_account(other.id)
    foreign = await trading.http.post(
        "/api/v1/bots",
        headers=user.headers,
        json={"name": "F", "strategy": "sma_cross", "symbol": "BTC/USDT", "account_id": other_account.id},
    )
    assert_error(foreign, 404, "NOT_FOUND")
    await create(trading, user.headers, name="Unique")
    assert_error(
        await trading.http.post(
            "/api/v1/bots",
            headers=user.headers,
            json={"name": "Unique", "strategy": "dca", "symbol": "ETH/USDT"},
        ),
        409,
        "CONFLICT",
    )
    assert (await trading.http.get("/api/v1/bots", headers=user.headers)).json()["total"] == 1


async def test_idempotency_key(trading):
    user = await register_user(trading.http, "repeater")
    headers = {**user.headers, "Idempotency-Key": "create-1"}
    body = {"name": "Once", "strategy": "sma_cross", "symbol": "BTC/USDT"}
    first = await trading.http.post("/api/v1/bots", headers=headers, json=body)
    again = await trading.http.post("/api/v1/bots", headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    different = await trading.http.post("/api/v1/bots", headers=headers, json={**body, "name": "Twice"})
    assert_error(different, 409, "CONFLICT")
    # Concurrent repeats of a new key create one bot.
    racing = {**user.headers, "Idempotency-Key": "create-2"}
    body2 = {**body, "name": "Raced"}
    answers = await asyncio.gather(
        *(trading.http.post("/api/v1/bots", headers=racing, json=body2) for _ in range(5))
    )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert (await trading.http.get("/api/v1/bots", headers=user.headers)).json()["total"] == 2
    # Keys are per user.
    other = await register_user(trading.http, "other-repeater")
    theirs = await trading.http.post(
        "/api/v1/bots", headers={**other.headers, "Idempotency-Key": "create-1"}, json=body
    )
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]


# --- seed 001: strategies run as bots -------------------------------------------------------------


async def test_strategy_start_and_stop(trading, supervisor):
    user = await register_user(trading.http, "strategist")
    saved = (
        await trading.http.post(
            "/api/v1/strategies",
            headers=user.headers,
            json={"name": "Golden", "strategy_type": "sma_cross", "params": {"fast": 50, "slow": 200}},
        )
    ).json()
    path = f"/strategies/{saved['id']}"
    assert_error(await post(trading, user.headers, f"{path}/stop"), 400, "BOT_NOT_ACTIVE")
    started = await post(trading, user.headers, f"{path}/start", {"symbol": "ETHUSDT", "timeframe": "4h"})
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["strategy_id"] == saved["id"] and body["status"] == "started"
    assert body["message"] == "Strategy started successfully" and body["started_at"].endswith("Z")
    assert body["bot_status"] == "starting" and supervisor.woken == [body["bot_id"]]
    bot = (await trading.http.get(f"/api/v1/bots/{body['bot_id']}", headers=user.headers)).json()
    assert (bot["name"], bot["strategy_id"], bot["mode"]) == ("Golden", saved["id"], "paper")
    assert bot["symbols"] == ["ETH/USDT"] and bot["timeframe"] == "4h"
    assert bot["params"] == {"fast": 50, "slow": 200, "allow_short": False}
    assert_error(await post(trading, user.headers, f"{path}/start"), 400, "BOT_ALREADY_ACTIVE")
    stopped = (await post(trading, user.headers, f"{path}/stop")).json()
    assert stopped["status"] == "stopped" and stopped["bot_id"] == bot["id"] and stopped["stopped_at"]
    assert_error(await post(trading, user.headers, f"{path}/stop"), 400, "BOT_NOT_ACTIVE")
    # The strategy changes; starting again reuses the bot with the new parameters.
    await trading.http.patch(
        f"/api/v1/strategies/{saved['id']}", headers=user.headers, json={"params": {"fast": 20}}
    )
    again = (await post(trading, user.headers, f"{path}/start")).json()
    assert again["bot_id"] == bot["id"]
    reused = (await trading.http.get(f"/api/v1/bots/{bot['id']}", headers=user.headers)).json()
    assert reused["params"]["fast"] == 20 and reused["symbols"] == ["ETH/USDT"]
    assert (await trading.http.get("/api/v1/bots", headers=user.headers)).json()["total"] == 1
    # Unknown and other users' strategies.
    assert_error(await post(trading, user.headers, f"/strategies/{MISSING}/start"), 404, "STRATEGY_NOT_FOUND")
    other = await register_user(trading.http, "other-strategist")
    assert_error(await post(trading, other.headers, f"{path}/start"), 404, "STRATEGY_NOT_FOUND")
    assert_error(await post(trading, other.headers, f"{path}/stop"), 404, "STRATEGY_NOT_FOUND")
    # A bot already using the name for something else.
    clash = (
        await trading.http.post(
            "/api/v1/strategies", headers=user.headers, json={"name": "Clash", "strategy_type": "dca"}
        )
    ).json()
    await create(trading, user.headers, name="Clash")
    assert_error(await post(trading, user.headers, f"/strategies/{clash['id']}/start"), 409, "CONFLICT")
    assert_error(await post(trading, user.headers, f"/strategies/{clash['id']}/stop"), 400, "BOT_NOT_ACTIVE")


# --- seed 004: the default bot -----------------------------------------------------------------------


async def test_default_bot_routes(trading, supervisor):
    user = await register_user(trading.http, "scalper")
    other = await register_user(trading.http, "rsi-scalper")
    third = await register_user(trading.http, "x-scalper")
    status = (await trading.http.get("/api/v1/bot/status", headers=user.headers)).json()
    assert status == {
        "status": "stopped",
        "trading_enabled": False,
        "paper_trading": True,
        "uptime_seconds": 0,
        "started_at": None,
        "strategies": [],
        "performance": {"daily_pnl": "0", "daily_trades": 0, "win_rate": None},
        "bot_id": None,
    }
    assert_error(await post(trading, user.headers, "/bot/stop"), 400, "BOT_NOT_ACTIVE")
    assert_error(
        await post(trading, user.headers, "/bot/start", {"paper_trading": False}), 400, "BAD_REQUEST"
    )
    two = await post(trading, user.headers, "/bot/start", {"strategies": ["sma_cross", "dca"]})
    assert_error(two, 422, "VALIDATION_ERROR")
    started = await post(trading, user.headers, "/bot/start")
    assert started.status_code == 200, started.text
    body = started.json()
    assert body == {
        "status": "started",
        "message": "Trading bot started successfully",
        "paper_trading": True,
        "active_strategies": ["sma_cross"],
        "bot_id": body["bot_id"],
    }
    bot = (await trading.http.get(f"/api/v1/bots/{body['bot_id']}", headers=user.headers)).json()
    assert bot["is_default"] and bot["symbols"] == ["BTC/USDT"] and bot["timeframe"] == "1h"
    assert bot["params"] == {"fast": 10, "slow": 30, "allow_short": False}
    assert_error(await post(trading, user.headers, "/bot/start"), 400, "BOT_ALREADY_ACTIVE")
    await act_as_runner(
        trading, bot["id"], status=BotStatus.RUNNING, started_at=trading.container.clock.now()
    )
    trading.container.clock.advance(30)
    running = (await trading.http.get("/api/v1/bot/status", headers=user.headers)).json()
    assert running["status"] == "running" and running["trading_enabled"] is True
    assert running["uptime_seconds"] == 30 and running["started_at"].endswith("Z")
    assert running["strategies"] == [{"name": "sma_cross", "enabled": True, "signals_today": 0}]
    await trading.container.orders.place(
        user.id,
        OrderRequest(symbol="BTC/USDT", side=OrderSide.BUY, quantity=Decimal("0.01"), bot_id=bot["id"]),
    )
    stopped = (await post(trading, user.headers, "/bot/stop", {"close_positions": False})).json()
    assert stopped == {
        "status": "stopped",
        "message": "Trading bot stopped",
        "open_positions": 1,
        "bot_id": bot["id"],
    }
    after = (await trading.http.get("/api/v1/bot/status", headers=user.headers)).json()
    assert after["status"] == "stopped" and after["performance"]["daily_trades"] == 1
    assert after["trading_enabled"] is False
    # An existing default bot is started as it is; asking for another mode or strategy is refused.
    assert_error(
        await post(trading, user.headers, "/bot/start", {"paper_trading": False}), 400, "BAD_REQUEST"
    )
    assert_error(await post(trading, user.headers, "/bot/start", {"strategies": ["dca"]}), 400, "BAD_REQUEST")
    again = await post(
        trading, user.headers, "/bot/start", {"paper_trading": True, "strategies": ["sma_cross"]}
    )
    assert again.json()["bot_id"] == bot["id"]
    assert (await trading.http.get("/api/v1/bots", headers=user.headers)).json()["total"] == 1
    # Seed 004's strategy list names the type of a new default bot.
    rsi = (await post(trading, other.headers, "/bot/start", {"strategies": ["rsi_momentum"]})).json()
    assert rsi["active_strategies"] == ["rsi_momentum"]
    unknown = await post(trading, third.headers, "/bot/start", {"strategies": ["nope"]})
    assert_error(unknown, 404, "STRATEGY_NOT_FOUND")


# --- ownership ----------------------------------------------------------------------------------------


async def test_only_the_owner_reaches_a_bot(trading):
    alice = await register_user(trading.http, "alice-bots")
    bob = await register_user(trading.http, "bob-bots")
    bot = await create(trading, alice.headers)
    await post(trading, alice.headers, f"/bots/{bot['id']}/start")
    routes = [
        OwnedRoute("GET", "/api/v1/bots/{id}"),
        OwnedRoute("PATCH", "/api/v1/bots/{id}", json={"name": "mine now"}),
        OwnedRoute("DELETE", "/api/v1/bots/{id}"),
        OwnedRoute("POST", "/api/v1/bots/{id}/start"),
        OwnedRoute("POST", "/api/v1/bots/{id}/stop", json={"close_positions": True}),
        OwnedRoute("POST", "/api/v1/bots/{id}/pause"),
        OwnedRoute("POST", "/api/v1/bots/{id}/resume"),
        OwnedRoute("GET", "/api/v1/bots/{id}/status"),
        OwnedRoute("GET", "/api/v1/bots/{id}/events"),
    ]
    await assert_owner_only(
        trading.http,
        owner_headers=alice.headers,
        intruder_headers=bob.headers,
        object_id=bot["id"],
        missing_id=MISSING,
        routes=routes,
        check=OwnedRoute("GET", "/api/v1/bots/{id}"),
    )
    events = (await trading.http.get(f"/api/v1/bots/{bot['id']}/events", headers=alice.headers)).json()
    assert events["total"] == 2  # create and start: nothing from bob
    assert (await trading.http.get("/api/v1/bot/status", headers=bob.headers)).json()["bot_id"] is None
