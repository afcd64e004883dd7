"""Runners and leases in one process (bot_runner L1-L4): one runner per bot, capacity, a dead
runner's bots taken over after the lease expires, a graceful stop handing them over at once;
and bots on one exchange key sharing one rate budget."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from cryptoorchestrator.bootstrap import LiveVenues, ccxt_venue_factory
from cryptoorchestrator.config.logging import get_logger
from cryptoorchestrator.core.clock import SimClock
from cryptoorchestrator.domain.accounts import TradingAccount
from cryptoorchestrator.services.bot_runner import BotRunner
from tests.integration.bots.conftest import SYMBOL, BotsEnv

pytestmark = pytest.mark.integration

TTL = 15.0


def runner(env: BotsEnv, runner_id: str, *, capacity: int = 10) -> BotRunner:
    """Another runner over the same database and services (a second process, in miniature)."""
    container = env.container
    return BotRunner(
        container.uow_factory,
        clock=env.clock,
        orders=container.orders,
        portfolio=container.portfolio,
        trading=container.trading,
        paper=container.paper,
        execution_for=container.bot_runner.context.execution_for,
        registry=container.strategies.registry,
        candles=env.feed,
        logger=get_logger("tests.bots"),
        heartbeat_seconds=3600,  # ticks are driven by the test
        lease_seconds=TTL,
        capacity=capacity,
        runner_id=runner_id,
    )


@pytest.fixture
async def idle_env(bots_env_factory: Any) -> BotsEnv:
    """The app's own runner is off: the test's runners do the work."""
    env: BotsEnv = await bots_env_factory(runner_enabled=False, bot_lease_seconds=TTL)
    return env


async def holder(env: BotsEnv, bot_id: str) -> str | None:
    async with env.container.uow_factory() as uow:
        lease = await uow.bot_leases.holder(bot_id, now=env.clock.now())
    return None if lease is None else lease.runner_id


async def test_one_runner_per_bot_and_a_dead_runners_bot_moves_after_the_ttl(idle_env: BotsEnv) -> None:
    env = idle_env
    first, second = runner(env, "runner-a"), runner(env, "runner-b")
    bot = await env.create("leased")
    await env.container.bots.start(env.user.id, bot.id)
    await first.start()
    await first.wait_ready(bot.id)
    await second.start()
    await second.tick()
    assert await holder(env, bot.id) == "runner-a"
    assert first.held() == [bot.id] and second.held() == []
    stamp = env.stamp(0)
    env.clock.set(stamp / 1000 + 300)
    await first.tick()  # its heartbeat
    await env.feed.step()
    assert await first.wait_for_candle(bot.id, stamp)
    # runner-a stops renewing (it died): runner-b takes the bot once the lease expired, not before.
    env.clock.advance(TTL - 1)
    await second.tick()
    assert second.held() == []
    env.clock.advance(2)
    await second.tick()
    assert await holder(env, bot.id) == "runner-b"
    session = await second.wait_ready(bot.id)
    assert session.books[SYMBOL].last_ms == stamp  # it resumes where runner-a left off
    await env.feed.step()
    assert await second.wait_for_candle(bot.id, env.stamp(1))
    # runner-a wakes up: its renewal no longer has the lease, so it drops the bot.
    await first.tick()
    assert first.held() == []
    assert (await env.bot(bot.id)).status.value == "running"
    await first.stop()
    await second.stop()
    assert await holder(env, bot.id) is None  # released on a clean stop


async def test_capacity_spreads_bots_over_runners(idle_env: BotsEnv) -> None:
    env = idle_env
    first, second = runner(env, "runner-a", capacity=1), runner(env, "runner-b", capacity=1)
    bots = [await env.create(f"bot-{index}") for index in range(2)]
    for bot in bots:
        await env.container.bots.start(env.user.id, bot.id)
    await first.start()
    await second.start()
    await first.tick()
    await second.tick()
    assert len(first.held()) == 1 and len(second.held()) == 1
    assert set(first.held() + second.held()) == {bot.id for bot in bots}
    await first.stop()
    await second.stop()


async def test_a_clean_stop_hands_the_bots_over_at_once(idle_env: BotsEnv) -> None:
    env = idle_env
    first, second = runner(env, "runner-a"), runner(env, "runner-b")
    bot = await env.create("handover")
    await env.container.bots.start(env.user.id, bot.id)
    await first.start()
    await first.wait_ready(bot.id)
    await first.stop()  # L4: leases released, statuses kept
    assert (await env.bot(bot.id)).status.value == "running"
    await second.start()
    await second.tick()
    assert await holder(env, bot.id) == "runner-b"
    await second.stop()


async def test_a_stopping_bot_left_by_a_dead_runner_is_stopped_when_woken(idle_env: BotsEnv) -> None:
    env = idle_env
    first, second = runner(env, "runner-a"), runner(env, "runner-b")
    bot = await env.create("orphan")
    await env.container.bots.start(env.user.id, bot.id)
    await first.start()
    await first.wait_ready(bot.id)
    await env.container.bots.stop(env.user.id, bot.id)  # held: status stopping, runner-a never acts
    assert (await env.bot(bot.id)).status.value == "stopping"
    env.clock.advance(TTL + 1)
    await second.start()
    await second.wake(bot.id)
    await second.tick()
    await env.wait_status(bot, "stopped")
    await second.stop()


def account(account_id: str, credentials: str) -> TradingAccount:
    now = datetime.now(UTC)
    return TradingAccount(
        id=account_id,
        user_id=1,
        kind="exchange",
        name=account_id,
        exchange="binance",
        created_at=now,
        updated_at=now,
        credentials_encrypted=credentials,
    )


async def test_accounts_on_one_exchange_key_share_one_rate_budget(settings: Any) -> None:
    from cryptoorchestrator.bootstrap import build_secret_box

    box = build_secret_box(settings)
    same = box.encrypt(json.dumps({"api_key": "key-one", "secret": "s1"}))
    venues = LiveVenues(ccxt_venue_factory(settings), secret_box=box, clock=SimClock(0))
    try:
        first = venues.execution(account("a1", same))
        again = venues.execution(
            account("a2", box.encrypt(json.dumps({"api_key": "key-one", "secret": "s1"})))
        )
        other = venues.execution(
            account("a3", box.encrypt(json.dumps({"api_key": "key-two", "secret": "s2"})))
        )
        assert first is not again  # one client per account...
        assert first.venue.budget is again.venue.budget  # ...one budget per (exchange, key)
        assert other.venue.budget is not first.venue.budget
        assert first.venue.budget.key.exchange_id == "binance"
        assert "key-one" not in first.venue.budget.key.credential  # a fingerprint, never the key
    finally:
        await venues.close()
