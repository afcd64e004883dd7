"""Acceptance: a paper bot trades like the event replay over the same candles.

A bot (runner, session, paper venue, order service, ledger: the whole runtime) is run over
candles released one at a time, and :func:`run_replay` runs over the same candles. They must
make the same trades: same entry and exit bars, sides and kinds of exit (signal, stop, take
profit); entry and exit prices equal to 1e-9 relative (the ledger keeps fill prices to 10
decimal places, rule B7) and quantities to 1e-7 relative (the replay sizes from its exact
Decimal cash, the bot from the ledger's, which keeps fees to 18 places; both round down to the
same 1e-8 step, so a quantity may differ by one step).

Why this backtest configuration is the one a live bot matches:

* ``fill_at="close"``: the bot decides at the close of each candle and sends a market order at
  once; the paper venue fills it at that candle's close (its last price) moved by the slippage.
  The kernel's default (``"open"``, the next bar's open) is a price the bot never sees when it
  decides.
* ``slippage_bps=5`` and 0.1 % fees: the paper venue's slippage (``CO_PAPER_SLIPPAGE_BPS``,
  fixed model) and the offline market's fees (maker and taker 0.1 %); the bot sizes at the
  slipped price as the kernel does (two passes, rule R4).
* ``quantity_step=1e-8`` and ``min_notional=5``: the offline market's rules, which the order
  service applies to every order.
* Sizing: a bot without a stop loss puts ``risk_per_trade`` of its equity in a position
  (``sizing="percent_equity"``); with one it risks that fraction (``sizing="risk"``). Sizes are
  kept below what the order service may lock for a spot market buy (2 % above the price), the
  one cap the kernel does not have.
* Stops and take profits rest at the paper venue as reduce-only orders placed from the entry's
  fill price; the venue reads each next candle as the kernel does (gaps at the open, the stop
  before the take profit inside a bar); the trailing stop is moved once a candle, from the best
  price up to the previous candle (R5c).

Synthetic series always run; the real candles (``CO_DATA_DIR``) are marked ``realdata``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cryptoorchestrator.backtest.engine import BacktestConfig
from cryptoorchestrator.backtest.replay import run_replay
from cryptoorchestrator.core.clock import SimClock
from cryptoorchestrator.domain.orders import OrderSide, OrderType
from cryptoorchestrator.strategies import registry
from tests.integration.bots.conftest import (
    STEP_MS,
    SYMBOL,
    BotsEnv,
    bots_env_factory,
    next_slot_ms,
    walk,
)

__all__ = ["bots_env_factory"]  # the fixture, used by name

pytestmark = [pytest.mark.slow, pytest.mark.integration]

BARS = 360
PARAMS = {"fast": 5, "slow": 20}
CASES: dict[str, dict[str, Any]] = {
    "equity_fraction": {"risk_per_trade": "0.5"},
    "stop_and_target": {"risk_per_trade": "0.01", "stop_loss": "0.02", "take_profit": "0.03"},
    "trailing": {"risk_per_trade": "0.01", "stop_loss": "0.03", "trailing_stop": "0.015"},
}
#: The kinds of exit each synthetic case must exercise (the comparison is not vacuous).
EXPECTED_KINDS = {
    "equity_fraction": {"signal"},
    "stop_and_target": {"signal", "stop", "take_profit"},
    "trailing": {"stop"},
}
REAL_FILE = "binance_BTC-USDT_5m.csv"
#: Tighter levels for 5-minute BTC candles, so that stops and take profits do happen.
REAL_CASES: dict[str, dict[str, Any]] = {
    "equity_fraction": CASES["equity_fraction"],
    "stop_and_target": {"risk_per_trade": "0.002", "stop_loss": "0.004", "take_profit": "0.006"},
    "trailing": {"risk_per_trade": "0.003", "stop_loss": "0.006", "trailing_stop": "0.003"},
}


@dataclass(frozen=True)
class Trade:
    entry_bar: int
    exit_bar: int | None
    side: int
    exit_kind: str
    quantity: Decimal
    entry_price: Decimal
    exit_price: Decimal | None
    boundary: bool = False


def replay_config(risk: dict[str, Any]) -> BacktestConfig:
    stop = float(risk["stop_loss"]) if "stop_loss" in risk else None
    return BacktestConfig(
        initial_cash=10_000.0,
        fill_at="close",
        sizing="risk" if stop is not None else "percent_equity",
        size=float(risk["risk_per_trade"]),
        stop_loss=stop,
        take_profit=float(risk["take_profit"]) if "take_profit" in risk else None,
        trailing_stop=float(risk["trailing_stop"]) if "trailing_stop" in risk else None,
        taker_fee=0.001,
        maker_fee=0.001,
        slippage_bps=5.0,
        quantity_step=1e-8,
        min_notional=5.0,
        timeframe="5m",
    )


def replay_trades(frame: pd.DataFrame, risk: dict[str, Any]) -> list[Trade]:
    result = run_replay(
        frame, registry.builtin_registry().create("sma_cross"), params=PARAMS, config=replay_config(risk)
    )
    kinds = {"signal": "signal", "stop_loss": "stop", "trailing_stop": "stop", "take_profit": "take_profit"}
    trades = []
    for trade in result.trades:
        still_open = trade.exit_reason == "open"
        trades.append(
            Trade(
                entry_bar=trade.entry_bar,
                exit_bar=None if still_open else trade.exit_bar,
                side=trade.side,
                exit_kind="open" if still_open else kinds[trade.exit_reason],
                quantity=trade.quantity,
                entry_price=trade.entry_price,
                exit_price=None if still_open else trade.exit_price,
            )
        )
    return trades


async def bot_trades(env: BotsEnv, bot: Any, first_open_ms: int) -> list[Trade]:
    """The bot's trades, read back from its orders and their fills (bar = candle of the fill)."""
    fills = []
    async with env.container.uow_factory() as uow:
        for order in await env.orders(bot):
            for record in await uow.fills.for_order(order.id):
                fills.append((record.timestamp, order.created_at, order, record))
    fills.sort(key=lambda item: (item[0], item[1]))
    trades: list[Trade] = []
    entry: tuple[int, int, Decimal, Decimal] | None = None
    for stamp, _, order, record in fills:
        bar = (int(stamp.timestamp() * 1000) - STEP_MS - first_open_ms) // STEP_MS
        if not order.reduce_only:
            assert entry is None, f"a second entry at bar {bar} while one is open"
            entry = (bar, 1 if order.side is OrderSide.BUY else -1, record.quantity, record.price)
            continue
        assert entry is not None, f"an exit at bar {bar} without an entry"
        kind = {OrderType.MARKET: "signal", OrderType.STOP_MARKET: "stop", OrderType.LIMIT: "take_profit"}[
            order.type
        ]
        if order.client_order_id.endswith("-fl"):
            # The trailing stop moved through the close of ``bar``: the bot exits at that close,
            # the replay at the next bar's open (a gap exit, R5a): the same instant.
            kind, bar = "stop", bar + 1
        trades.append(
            Trade(
                entry[0],
                bar,
                entry[1],
                kind,
                entry[2],
                entry[3],
                record.price,
                boundary=kind == "stop" and order.type is OrderType.MARKET,
            )
        )
        entry = None
    if entry is not None:
        trades.append(Trade(entry[0], None, entry[1], "open", entry[2], entry[3], None))
    return trades


def assert_same_trades(ours: list[Trade], reference: list[Trade], frame: pd.DataFrame) -> None:
    """Same bars, sides and kinds of exit; prices and quantities as the module docstring says.

    One exit differs by construction: when the trailing stop moves through a candle's close,
    the replay exits at the next bar's open (a gap) and the bot at that close, the first price
    it can trade. The bot's price is then the close moved by the slippage, and the next trades'
    sizes follow the cash that left (relative tolerance: the gap between that close and open).
    """
    shape = [(t.entry_bar, t.exit_bar, t.side, t.exit_kind) for t in ours]
    expected = [(t.entry_bar, t.exit_bar, t.side, t.exit_kind) for t in reference]
    assert shape == expected
    quantity_tolerance = Decimal("1e-7")
    for mine, theirs in zip(ours, reference, strict=True):
        assert mine.entry_price == pytest.approx(theirs.entry_price, rel=Decimal("1e-9"))
        assert mine.quantity == pytest.approx(theirs.quantity, rel=quantity_tolerance)
        if theirs.exit_price is None:
            continue
        if not mine.boundary:
            assert mine.exit_price == pytest.approx(theirs.exit_price, rel=Decimal("1e-9"))
            continue
        assert theirs.exit_bar is not None
        close, open_ = (
            Decimal(str(frame[c].iloc[i]))
            for c, i in (("close", theirs.exit_bar - 1), ("open", theirs.exit_bar))
        )
        slip = Decimal(1) - Decimal(mine.side) * Decimal("0.0005")
        assert theirs.exit_price == pytest.approx(open_ * slip, rel=Decimal("1e-12"))  # a gap exit
        assert mine.exit_price == pytest.approx(close * slip, rel=Decimal("1e-9"))
        quantity_tolerance += abs(close - open_) / open_ * 2


async def run_bot(env: BotsEnv, risk: dict[str, Any]) -> list[Trade]:
    bot = await env.create("parity", params=PARAMS, risk=risk)
    await env.start(bot)
    await env.subscribed()
    frame = env.frames[SYMBOL]
    await env.step(bot, count=len(frame))
    stored = await env.bot(bot.id)
    assert stored.status.value == "running", stored.error
    return await bot_trades(env, bot, int(frame["timestamp"].iloc[0]))


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_paper_bot_trades_like_the_replay(bots_env_factory: Any, case: str) -> None:
    clock = SimClock(start=1_800_000_000.0)
    frame = walk(BARS, start_ms=next_slot_ms(clock))
    env = await bots_env_factory({SYMBOL: frame}, clock=clock)
    reference = replay_trades(frame, CASES[case])
    assert len(reference) >= 5, "too few trades for a meaningful comparison"
    assert {t.exit_kind for t in reference} >= EXPECTED_KINDS[case]
    assert_same_trades(await run_bot(env, CASES[case]), reference, frame)


def real_frame(clock: SimClock, bars: int) -> pd.DataFrame:
    root = os.environ.get("CO_DATA_DIR")
    if not root:
        pytest.skip("CO_DATA_DIR not set: the real candle files are not available")
    path = Path(root) / REAL_FILE
    if not path.is_file():
        pytest.skip(f"{REAL_FILE} is missing from CO_DATA_DIR={root}")
    frame = pd.read_csv(path).iloc[:bars].reset_index(drop=True)
    frame = frame[["timestamp", "open", "high", "low", "close", "volume"]].copy()
    # The same candles moved to lie ahead of the simulated clock (only their spacing matters).
    frame["timestamp"] = next_slot_ms(clock) + STEP_MS * pd.RangeIndex(len(frame))
    return frame


@pytest.mark.realdata
@pytest.mark.parametrize("case", sorted(REAL_CASES))
async def test_a_paper_bot_trades_like_the_replay_on_real_candles(bots_env_factory: Any, case: str) -> None:
    clock = SimClock(start=1_800_000_000.0)
    frame = real_frame(clock, BARS)
    env = await bots_env_factory({SYMBOL: frame}, clock=clock)
    reference = replay_trades(frame, REAL_CASES[case])
    assert len(reference) >= 5, "too few trades on the real candles for a meaningful comparison"
    assert_same_trades(await run_bot(env, REAL_CASES[case]), reference, frame)
