"""A paper bot under the runner: statuses and events, protective orders (G1-G4), pause, stop with
and without closing, resuming from the last candle, and failures becoming status ``error``."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cryptoorchestrator.domain.orders import OrderType
from tests.integration.bots.conftest import SYMBOL, BotsEnv, from_closes, next_slot_ms

pytestmark = pytest.mark.integration

FLAT = [100.0] * 12
STOPS = {"risk_per_trade": "0.01", "stop_loss": "0.02", "take_profit": "0.05"}


@pytest.fixture
async def flat_env(bots_env_factory) -> BotsEnv:
    """Twelve candles at 100, then a slow rise and a fall through any 2 % stop."""
    from cryptoorchestrator.core.clock import SimClock

    clock = SimClock(start=1_800_000_000.0)
    closes = [*FLAT, 100.5, 101.0, 101.5, 102.0, 96.0, 95.0, 95.0, 95.0, 95.0, 95.0]
    env: BotsEnv = await bots_env_factory(
        {SYMBOL: from_closes(closes, start_ms=next_slot_ms(clock))}, clock=clock
    )
    return env


async def entered(env: BotsEnv, risk: dict | None = None, *, entry: int = 2, **script: list[int]):
    """A scripted bot that enters long at bar ``entry`` (stepped through it)."""
    env.script(entry_long=[entry], **script)
    bot = await env.create("scripted", strategy_type="scripted", params={}, risk=risk or STOPS)
    await env.start(bot)
    await env.subscribed()
    await env.step(bot, count=entry + 1)
    return bot


async def test_a_started_bot_runs_and_records_what_it_does(flat_env: BotsEnv) -> None:
    env = flat_env
    bot = await entered(env)
    stored = await env.bot(bot.id)
    assert stored.status.value == "running" and stored.started_at is not None and stored.error is None
    assert stored.last_candle_at is not None
    assert int(stored.last_candle_at.timestamp() * 1000) == env.stamp(2)
    assert stored.state["symbols"][SYMBOL]["last_ms"] == env.stamp(2)
    kinds = [event.kind for event in await env.events(bot)]
    assert {"state", "signal", "order", "fill"} <= set(kinds)
    orders = await env.orders(bot)
    entry = next(o for o in orders if o.client_order_id.endswith("-el"))
    assert entry.status.value == "filled" and entry.bot_id == bot.id
    # G1: the stop and the take profit from the entry's fill price, one OCO pair.
    stop = next(o for o in orders if o.type is OrderType.STOP_MARKET)
    take = next(o for o in orders if o.type is OrderType.LIMIT)
    fill = entry.average_price
    assert fill is not None
    assert stop.stop_price == pytest.approx(fill * Decimal("0.98"), rel=Decimal("1e-9"))
    assert take.price == pytest.approx(fill * Decimal("1.05"), rel=Decimal("1e-9"))
    assert stop.oco_group == take.oco_group == entry.id and stop.reduce_only and take.reduce_only
    # R4: risk 1 % of equity with a 2 % stop puts half the equity in.
    assert entry.quantity * fill == pytest.approx(Decimal(5000), rel=Decimal("0.002"))
    await env.ledger_consistent()


async def test_the_stop_fills_inside_a_later_candle_and_the_take_profit_is_cancelled(
    flat_env: BotsEnv,
) -> None:
    env = flat_env
    bot = await entered(env)
    await env.step(bot, count=14)  # through the fall to 96
    assert await env.position() == 0
    orders = {o.type: o for o in await env.orders(bot) if o.reduce_only}
    assert orders[OrderType.STOP_MARKET].status.value == "filled"
    assert orders[OrderType.LIMIT].status.value == "canceled"
    assert not await env.open_orders(bot)
    await env.ledger_consistent()


async def test_the_watchdog_re_arms_a_cancelled_stop(flat_env: BotsEnv) -> None:
    env = flat_env
    bot = await entered(env)
    [stop] = [o for o in await env.open_orders(bot) if o.type is OrderType.STOP_MARKET]
    await env.container.orders.cancel(env.user.id, stop.id)  # outside the bot
    await env.step(bot)
    stops = [o for o in await env.open_orders(bot) if o.type is OrderType.STOP_MARKET]
    assert len(stops) == 1 and stops[0].id != stop.id
    assert stops[0].stop_price == stop.stop_price
    assert stops[0].client_order_id.endswith("-ra")
    protection = [e.message for e in await env.events(bot, "protection")]
    assert any("re-armed" in message for message in protection)
    assert await env.position() > 0


async def test_the_watchdog_flattens_when_the_price_is_through_the_missing_stop(flat_env: BotsEnv) -> None:
    env = flat_env
    bot = await entered(env, entry=11)
    await env.step(bot, count=4)  # up to 102
    [stop] = [o for o in await env.open_orders(bot) if o.type is OrderType.STOP_MARKET]
    await env.container.orders.cancel(env.user.id, stop.id)
    assert await env.position() > 0
    await env.step(bot)  # closes at 96, below the 98 stop that is missing
    assert await env.position() == 0
    exits = [o for o in await env.orders(bot) if o.client_order_id.endswith("-fl")]
    assert len(exits) == 1 and exits[0].status.value == "filled"
    assert any("flattened" in e.message for e in await env.events(bot, "protection"))
    await env.ledger_consistent()


async def test_trailing_stop_moves_up_and_never_down(bots_env_factory) -> None:
    from cryptoorchestrator.core.clock import SimClock

    clock = SimClock(start=1_800_000_000.0)
    closes = [100.0, 100.0, 100.0, 102.0, 104.0, 103.0, 106.0, 105.5, 105.0]
    env = await bots_env_factory({SYMBOL: from_closes(closes, start_ms=next_slot_ms(clock))}, clock=clock)
    bot = await entered(env, {"risk_per_trade": "0.3", "trailing_stop": "0.03"})
    levels = []
    for _ in range(6):
        await env.step(bot)
        [stop] = [o for o in await env.open_orders(bot) if o.type is OrderType.STOP_MARKET]
        levels.append(stop.stop_price)
    assert levels == sorted(levels) and levels[0] < levels[-1]
    highs = env.frames[SYMBOL]["high"]
    assert levels[-1] == pytest.approx(
        Decimal(str(max(highs.iloc[3:9]))) * Decimal("0.97"), rel=Decimal("1e-9")
    )


async def test_pause_keeps_protection_and_opens_nothing_new(flat_env: BotsEnv) -> None:
    env = flat_env
    bot = await entered(env, exit_long=[5])
    await env.container.bots.pause(env.user.id, bot.id)
    await env.wait_status(bot, "paused")
    protective = {o.id for o in await env.open_orders(bot)}
    assert len(protective) == 2
    await env.step(bot)  # bar 3: paused, the position keeps its stop and target
    assert {o.id for o in await env.open_orders(bot)} == protective
    await env.step(bot, count=3)  # bar 5: the exit signal still closes
    assert await env.position() == 0
    await env.container.bots.resume(env.user.id, bot.id)
    await env.wait_status(bot, "running")


async def test_paused_bots_do_not_enter(flat_env: BotsEnv) -> None:
    env = flat_env
    env.script(entry_long=[3, 6])
    bot = await env.create("scripted", strategy_type="scripted", params={}, risk=STOPS)
    await env.start(bot)
    await env.subscribed()
    await env.step(bot)
    await env.container.bots.pause(env.user.id, bot.id)
    await env.wait_status(bot, "paused")
    await env.step(bot, count=3)  # bar 3 signals an entry: ignored
    assert await env.position() == 0
    await env.container.bots.resume(env.user.id, bot.id)
    await env.wait_status(bot, "running")
    await env.step(bot, count=3)  # bar 6 signals again: taken
    assert await env.position() > 0
    signals = await env.events(bot, "signal")
    assert [e.data["intents"] for e in signals if e.data["timestamp"] == env.stamp(3)] == [[]]


async def test_stop_with_close_positions_flattens(flat_env: BotsEnv) -> None:
    env = flat_env
    bot = await entered(env)
    await env.container.bots.stop(env.user.id, bot.id, close_positions=True)
    stopped = await env.wait_status(bot, "stopped")
    assert stopped.stopped_at is not None and stopped.state.get("close_positions") is False
    assert await env.position() == 0
    assert not await env.open_orders(bot)
    closing = [o for o in await env.orders(bot) if o.client_order_id.endswith("-st")]
    assert len(closing) == 1 and closing[0].status.value == "filled" and closing[0].reduce_only
    assert env.runner.session(bot.id) is None or env.runner.session(bot.id).outcome == "stopped"
    await env.ledger_consistent()


async def test_stop_without_closing_keeps_the_position_and_its_stop(flat_env: BotsEnv) -> None:
    env = flat_env
    bot = await entered(env)
    await env.container.bots.stop(env.user.id, bot.id)
    await env.wait_status(bot, "stopped")
    assert await env.position() > 0
    assert {o.type for o in await env.open_orders(bot)} == {OrderType.STOP_MARKET, OrderType.LIMIT}
    # Started again, it adopts the position it left and goes on protecting it.
    await env.container.bots.start(env.user.id, bot.id)
    await env.wait_status(bot, "running")
    await env.step(bot)
    assert len([o for o in await env.open_orders(bot) if o.type is OrderType.STOP_MARKET]) == 1


async def test_a_restarted_runner_resumes_from_the_last_candle(flat_env: BotsEnv) -> None:
    env = flat_env
    bot = await entered(env, exit_long=[6])
    await env.runner.stop()  # the leases are released; the bot still wants to run
    assert (await env.bot(bot.id)).status.value == "running"
    for _ in range(5):  # candles close while no runner runs the bot
        await env.feed.step()
    await env.runner.start()
    assert await env.runner.wait_for_candle(bot.id, env.stamp(7), seconds=60)
    assert await env.position() == 0  # the exit at bar 6 happened on resume
    orders = await env.orders(bot)
    assert len([o for o in orders if o.client_order_id.endswith("-el")]) == 1
    assert len([o for o in orders if o.client_order_id.endswith("-x")]) == 1
    assert any(e.kind == "state" and "starting" in e.message for e in await env.events(bot))


async def test_a_failing_strategy_puts_the_bot_in_error(flat_env: BotsEnv) -> None:
    env = flat_env
    env.script(entry_long=[1], **{"raise": [3]})  # type: ignore[arg-type]
    bot = await env.create("scripted", strategy_type="scripted", params={}, risk=STOPS)
    await env.start(bot)
    await env.subscribed()
    await env.step(bot, count=3)
    await env.feed.step()
    failed = await env.wait_status(bot, "error")
    assert failed.error is not None and "scripted failure" in failed.error
    assert any(e.kind == "error" for e in await env.events(bot))
    # The position and its stop stay in place; the lease is free again.
    assert await env.position() > 0
    assert any(o.type is OrderType.STOP_MARKET for o in await env.open_orders(bot))
    async with env.container.uow_factory() as uow:
        assert await uow.bot_leases.holder(bot.id, now=env.clock.now()) is None
