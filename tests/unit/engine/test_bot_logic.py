"""The bot's trading rules (engine/bot_logic.py): R1/R2 decisions, R4 sizing, R5 protection and
trailing, R8 breach; and a bar-by-bar simulation driven by them that reproduces the event
replay with ``fill_at="close"`` exactly (the rules, without any infrastructure)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from cryptoorchestrator.backtest.engine import BacktestConfig
from cryptoorchestrator.backtest.replay import run_replay
from cryptoorchestrator.engine import bot_logic as logic
from cryptoorchestrator.engine.signals import Candle, Decision, SignalEngine
from cryptoorchestrator.simulator.fill_model import FillRules
from cryptoorchestrator.strategies import registry

D = Decimal


@dataclass(frozen=True)
class Risk:
    risk_per_trade: Decimal = Decimal("0.5")
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trailing_stop: Decimal | None = None
    leverage: Decimal = Decimal(1)
    max_open_positions: int = 1
    max_position_fraction: Decimal = Decimal(1)


def decision(**flags: bool) -> Decision:
    values = {"entry_long": False, "exit_long": False, "entry_short": False, "exit_short": False, **flags}
    return Decision(symbol="BTC/USDT", timestamp=0, **values)


VIEW = logic.MarketView(equity=D(10000), free_cash=D(10000), price=D(100), taker_fee=D("0.001"))
LONG_POSITION = logic.PositionState.opened(logic.LONG, D(1), D(100))


def test_entry_opens_a_long_sized_as_percent_equity() -> None:
    [intent] = logic.on_decision(decision(entry_long=True), None, Risk(), VIEW)
    assert isinstance(intent, logic.OpenPosition)
    assert intent.side == logic.LONG
    assert intent.quantity == D("0.5") * D(10000) / (D(100) * (D(1) + D("0.001")))


def test_conflicting_signals_open_nothing() -> None:  # R2
    assert logic.on_decision(decision(entry_long=True, exit_long=True), None, Risk(), VIEW) == []
    assert logic.on_decision(decision(entry_long=True, entry_short=True), None, Risk(), VIEW) == []


def test_no_pyramiding_and_exit_closes() -> None:  # R1
    assert logic.on_decision(decision(entry_long=True), LONG_POSITION, Risk(), VIEW) == []
    [intent] = logic.on_decision(decision(exit_long=True), LONG_POSITION, Risk(), VIEW)
    assert intent == logic.ClosePosition("BTC/USDT", logic.LONG)


def test_short_entry_on_spot_only_closes_the_long() -> None:  # R2, spot
    intents = logic.on_decision(decision(entry_short=True), LONG_POSITION, Risk(), VIEW)
    assert intents == [logic.ClosePosition("BTC/USDT", logic.LONG)]


def test_reversal_on_a_swap_closes_then_opens_short() -> None:
    view = logic.MarketView(equity=D(1000), free_cash=D(1000), price=D(100), spot=False)
    close, open_ = logic.on_decision(decision(entry_short=True), LONG_POSITION, Risk(leverage=D(5)), view)
    assert isinstance(close, logic.ClosePosition) and isinstance(open_, logic.OpenPosition)
    assert open_.side == logic.SHORT
    assert open_.quantity == D("0.5") * D(1000) / (D(100) * (D("0.2") + D("0.001")))


def test_paused_and_full_books_open_nothing() -> None:
    assert logic.on_decision(decision(entry_long=True), None, Risk(), VIEW, entries_allowed=False) == []
    full = logic.MarketView(equity=D(10000), free_cash=D(10000), price=D(100), open_positions=1)
    assert logic.on_decision(decision(entry_long=True), None, Risk(), full) == []


def test_risk_sizing_with_a_stop_and_its_caps() -> None:  # R4
    risk = Risk(risk_per_trade=D("0.01"), stop_loss=D("0.02"))
    assert logic.entry_quantity(logic.LONG, risk, VIEW) == D("0.01") * D(10000) / (D(100) * D("0.02"))
    capped = Risk(risk_per_trade=D("0.1"), stop_loss=D("0.02"), max_position_fraction=D("0.3"))
    assert logic.entry_quantity(logic.LONG, capped, VIEW) == D("0.3") * D(10000) / D(100)
    poor = logic.MarketView(equity=D(10000), free_cash=D(1000), price=D(100), lock_buffer=D("0.02"))
    assert logic.entry_quantity(logic.LONG, capped, poor) == D(1000) / (D(100) * D("1.021"))


def test_sizing_uses_the_slipped_price_the_step_and_the_minimums() -> None:
    view = logic.MarketView(
        equity=D(10000), free_cash=D(10000), price=D(100), slippage_bps=D(5), quantity_step=D("0.001")
    )
    slipped = D(100) * (D(1) + D(5) / D(10000))
    wanted = D("0.5") * D(10000) / (slipped * D("1.001"))
    assert logic.entry_quantity(logic.LONG, Risk(), view) == FillRules(
        quantity_step=D("0.001")
    ).round_quantity(wanted)
    tiny = logic.MarketView(equity=D(10), free_cash=D(10), price=D(100), min_notional=D(5))
    assert logic.entry_quantity(logic.LONG, Risk(risk_per_trade=D("0.1")), tiny) == 0
    assert logic.entry_quantity(logic.LONG, Risk(), logic.MarketView(D(0), D(0), D(1))) == 0


def test_protection_and_trailing() -> None:  # R5
    risk = Risk(stop_loss=D("0.02"), take_profit=D("0.05"), trailing_stop=D("0.03"))
    protection = logic.protection_for(LONG_POSITION, risk)
    assert protection == logic.Protection(stop=D("98.00"), stop_reason="stop_loss", take_profit=D("105.00"))
    moved = logic.trail(LONG_POSITION, high=D(110), low=D(99))
    assert moved.best_price == D(110)
    assert logic.stop_level(moved, risk) == (D("106.70"), "trailing_stop")
    assert logic.trail(moved, high=D(105), low=D(90)) is moved
    short = logic.PositionState.opened(logic.SHORT, D(1), D(100))
    assert logic.protection_for(short, risk).stop == D("102.00")
    assert logic.trail(short, high=D(101), low=D(95)).best_price == D(95)
    assert logic.stop_level(short, Risk(trailing_stop=D("0.1"))) == (D("110.0"), "trailing_stop")
    assert logic.protection_for(short, Risk()) == logic.Protection(None, "stop_loss", None)


def test_stop_breached() -> None:  # R8
    assert logic.stop_breached(logic.LONG, D(98), D(98))
    assert not logic.stop_breached(logic.LONG, D("98.01"), D(98))
    assert logic.stop_breached(logic.SHORT, D(102), D(102))
    assert not logic.stop_breached(logic.SHORT, D(101), None)


# --- the rules reproduce the replay ------------------------------------------------------------


def synthetic(n: int = 600, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0.0, 0.002, n))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.008, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.008, n))
    stamps = 1_700_000_000_000 + 300_000 * np.arange(n, dtype=np.int64)
    return pd.DataFrame(
        {"timestamp": stamps, "open": open_, "high": high, "low": low, "close": close, "volume": 100.0}
    )


def dec(value: float) -> Decimal:
    return Decimal(str(value))


@dataclass
class Sim:
    """A minimal venue doing what the paper venue does for a bot: market orders at the close
    with slippage and taker fee; a resting stop (taker, slippage) and take profit (maker) read
    on the next candles as the kernel's R5a/b."""

    rules: FillRules
    cash: Decimal
    position: logic.PositionState | None = None
    stop: Decimal | None = None
    take: Decimal | None = None
    entry_bar: int = 0
    trades: list[tuple[int, int, int, str]] | None = None

    def exit(self, bar: int, price: Decimal, reason: str, *, taker: bool = True) -> None:
        position = self.position
        assert position is not None
        if taker:
            price = self.rules.fill_price(price, -position.side, quantity=position.quantity, bar_volume=D(1))
        fee = self.rules.commission(position.quantity, price, taker=taker)
        self.cash += (
            position.quantity * position.entry_price
            + position.side * position.quantity * (price - position.entry_price)
            - fee
        )
        assert self.trades is not None
        self.trades.append((self.entry_bar, bar, position.side, reason))
        self.position = self.stop = self.take = None

    def protective(self, bar: int, row: Candle) -> None:
        position = self.position
        if position is None:
            return
        side = position.side
        open_, high, low = dec(row.open), dec(row.high), dec(row.low)
        if logic.stop_breached(side, open_, self.stop):
            self.exit(bar, open_, "stop")
        elif self.take is not None and (open_ >= self.take if side > 0 else open_ <= self.take):
            self.exit(bar, open_, "take_profit", taker=False)
        elif logic.stop_breached(side, low if side > 0 else high, self.stop):
            self.exit(bar, self.stop, "stop")
        elif self.take is not None and (high >= self.take if side > 0 else low <= self.take):
            self.exit(bar, self.take, "take_profit", taker=False)
        else:
            self.position = logic.trail(position, high=high, low=low)


def simulate(data: pd.DataFrame, name: str, params: dict, risk: Risk, config: BacktestConfig) -> list:
    rules = FillRules(taker_fee=D("0.001"), maker_fee=D("0.001"), slippage_bps=D(5))
    sim = Sim(rules=rules, cash=D(10000), trades=[])
    engine = SignalEngine(registry.builtin_registry().create(name), params, window=len(data))
    for bar, row in enumerate(Candle(int(r[0]), *map(float, r[1:])) for r in data.to_numpy()):
        sim.protective(bar, row)
        choice = engine.on_candle("X/USDT", row)
        close = dec(row.close)
        view = logic.MarketView(
            equity=sim.cash, free_cash=sim.cash, price=close, taker_fee=D("0.001"), slippage_bps=D(5)
        )
        for intent in logic.on_decision(choice, sim.position, risk, view):
            if isinstance(intent, logic.ClosePosition):
                sim.exit(bar, close, "signal")
                continue
            price = rules.fill_price(close, intent.side, quantity=intent.quantity, bar_volume=D(1))
            sim.cash -= intent.quantity * price + rules.commission(intent.quantity, price)
            sim.position = logic.PositionState.opened(intent.side, intent.quantity, price)
            sim.entry_bar = bar
        if sim.position is not None:
            protection = logic.protection_for(sim.position, risk)
            sim.stop, sim.take = protection.stop, protection.take_profit
    assert sim.trades is not None
    return sim.trades


@pytest.mark.parametrize(
    ("risk", "extra"),
    [
        (Risk(), {}),
        (Risk(stop_loss=D("0.02"), take_profit=D("0.03")), {"stop_loss": 0.02, "take_profit": 0.03}),
        (Risk(stop_loss=D("0.03"), trailing_stop=D("0.02")), {"stop_loss": 0.03, "trailing_stop": 0.02}),
    ],
)
def test_the_rules_trade_like_the_replay_at_the_close(risk: Risk, extra: dict) -> None:
    data = synthetic()
    params = {"fast": 5, "slow": 20}
    sizing = "risk" if risk.stop_loss is not None else "percent_equity"
    config = BacktestConfig(
        fill_at="close", sizing=sizing, size=float(risk.risk_per_trade), slippage_bps=5.0, **extra
    )
    replayed = run_replay(data, registry.builtin_registry().create("sma_cross"), params=params, config=config)
    expected = [
        (t.entry_bar, t.exit_bar, t.side, "stop" if t.exit_reason.endswith("stop_loss") else t.exit_reason)
        for t in replayed.trades
        if t.exit_reason != "open"
    ]
    expected = [(a, b, s, "stop" if r == "trailing_stop" else r) for a, b, s, r in expected]
    assert len(expected) > 3
    assert simulate(data, "sma_cross", params, risk, config) == expected
