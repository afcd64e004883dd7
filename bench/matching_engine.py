"""Paper-exchange matching throughput: PaperExchange against a naive list-scan book, one run.

Workload (one symbol, deterministic, seeded): ``N`` resting orders (limits on both sides and
20% stops, 0.5-20% away from the price), then rounds of three operations: submit one more resting
order, cancel one earlier order (skipped by both books when it has filled), and one price update
(a quote on a mean-reverting walk that now and then reaches the nearest resting orders, so some
fill every run). Orders and quotes are built before timing; each operation is timed on its own
(``time.perf_counter``), best of ``--repeat`` runs.

The reference is the obvious plain-Python book: one list of resting orders; a cancel scans it for
the id; a quote scans every order for the ones it crosses (buy limit ``>= ask``, sell limit
``<= bid``, stops on the last price) and fills them with a Decimal price and fee. It does no
validation and emits no events, so it is a floor on per-operation overhead; PaperExchange pays
for validation, ``Accepted``/``Filled`` events applied to immutable orders, OCO bookkeeping and
the price-ordered heaps that let a quote touch only the orders it crosses. Both books must end
with the same open orders and the same number of fills, or the script says so and exits 1.

Usage: ``.venv/bin/python bench/matching_engine.py [--sizes 100,1000,10000] [--rounds 3000]
[--repeat 3]``
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cryptoorchestrator.domain.instruments import Instrument
from cryptoorchestrator.domain.orders import Filled, Order, OrderSide, OrderType
from cryptoorchestrator.simulator.fill_model import FillRules
from cryptoorchestrator.simulator.market_state import MarketState
from cryptoorchestrator.simulator.matching import PaperExchange

SYMBOL = "BTC/USDT"
INSTRUMENT = Instrument(
    symbol=SYMBOL, base="BTC", quote="USDT", price_tick=Decimal("0.01"), quantity_step=Decimal("0.001")
)
T0 = datetime(2024, 1, 1, tzinfo=UTC)
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Spec:
    """One order of the workload, before either book sees it."""

    id: str
    side: OrderSide
    type: OrderType
    quantity: Decimal
    price: Decimal  # the limit, or the stop of a stop-market order


@dataclass(frozen=True, slots=True)
class Workload:
    initial: list[Spec]
    submits: list[Spec]
    cancels: list[int]  # index into all specs (initial + submitted so far)
    quotes: list[tuple[Decimal, Decimal, Decimal]]  # last, bid, ask


def _spec(rng: random.Random, number: int, price: float) -> Spec:
    away = rng.uniform(0.005, 0.20)
    side = OrderSide.BUY if rng.random() < 0.5 else OrderSide.SELL
    stop = rng.random() < 0.2
    below = (side is OrderSide.BUY) != stop  # buy limits and sell stops rest below the price
    level = price * (1 - away) if below else price * (1 + away)
    return Spec(
        id=f"o{number}",
        side=side,
        type=OrderType.STOP_MARKET if stop else OrderType.LIMIT,
        quantity=Decimal(rng.randint(1, 1000)) * INSTRUMENT.quantity_step,
        price=Decimal(f"{level:.2f}"),
    )


def workload(resting: int, rounds: int, seed: int = 7) -> Workload:
    rng = random.Random(seed)
    initial = [_spec(rng, i, 100.0) for i in range(resting)]
    submits, cancels, quotes = [], [], []
    price = 100.0
    for r in range(rounds):
        submits.append(_spec(rng, resting + r, price))
        cancels.append(rng.randrange(resting + r + 1))
        # Mean-reverting walk: mostly within 1% of 100, so fills are occasional, not a sweep.
        price += (100.0 - price) * 0.01 + rng.gauss(0.0, 0.15)
        last = Decimal(f"{price:.2f}")
        quotes.append((last, last - CENT, last + CENT))
    return Workload(initial, submits, cancels, quotes)


# --- the reference: a plain list, scanned ----------------------------------------------------------


class NaiveBook:
    """The obvious implementation: a list of resting orders, scanned on every cancel and quote."""

    def __init__(self, fee_rate: Decimal) -> None:
        self.orders: list[Spec] = []
        self.fills: list[tuple[str, Decimal, Decimal, Decimal]] = []
        self.fee_rate = fee_rate

    def submit(self, spec: Spec) -> None:
        self.orders.append(spec)

    def cancel(self, order_id: str) -> bool:
        for i, spec in enumerate(self.orders):
            if spec.id == order_id:
                del self.orders[i]
                return True
        return False

    def on_quote(self, last: Decimal, bid: Decimal, ask: Decimal) -> None:
        keep: list[Spec] = []
        for spec in self.orders:
            price = self._crossed(spec, last, bid, ask)
            if price is None:
                keep.append(spec)
            else:
                self.fills.append((spec.id, price, spec.quantity, price * spec.quantity * self.fee_rate))
        self.orders = keep

    @staticmethod
    def _crossed(spec: Spec, last: Decimal, bid: Decimal, ask: Decimal) -> Decimal | None:
        buy = spec.side is OrderSide.BUY
        if spec.type is OrderType.LIMIT:
            hit = ask <= spec.price if buy else bid >= spec.price
            return spec.price if hit else None
        hit = last >= spec.price if buy else last <= spec.price
        if not hit:
            return None
        return max(spec.price, ask) if buy else min(spec.price, bid)  # a stop fills at the worse


# --- the runs ------------------------------------------------------------------------------------


def _order(spec: Spec) -> Order:
    return Order(
        id=spec.id,
        user_id=1,
        account_id="bench",
        symbol=SYMBOL,
        side=spec.side,
        type=spec.type,
        quantity=spec.quantity,
        client_order_id=f"c-{spec.id}",
        created_at=T0,
        updated_at=T0,
        price=spec.price if spec.type is OrderType.LIMIT else None,
        stop_price=spec.price if spec.type is OrderType.STOP_MARKET else None,
    )


Timings = dict[str, float]
Outcome = tuple[frozenset[str], int, int]  # open order ids at the end, fills, cancels done
clock = time.perf_counter


def run_engine(work: Workload) -> tuple[Timings, Outcome]:
    engine = PaperExchange(rules=FillRules(slippage_bps=Decimal(0)), id_prefix="bench")
    orders = {spec.id: _order(spec) for spec in [*work.initial, *work.submits]}
    quotes = [
        MarketState(symbol=SYMBOL, last=last, bid=bid, ask=ask, timestamp=T0 + timedelta(seconds=i))
        for i, (last, bid, ask) in enumerate(work.quotes)
    ]
    seed_market = MarketState(symbol=SYMBOL, last=Decimal(100), timestamp=T0)
    for spec in work.initial:
        engine.submit(orders[spec.id], instrument=INSTRUMENT, market=seed_market, now=T0)
    ids = [spec.id for spec in work.initial]
    open_ids = set(ids)  # what the service would know from the events
    timings: Timings = {"submit": 0.0, "cancel": 0.0, "quote": 0.0}
    fills = cancels = 0
    for r, spec in enumerate(work.submits):
        now = T0 + timedelta(seconds=r + 1)
        market = quotes[r - 1] if r else seed_market
        order = orders[spec.id]
        start = clock()
        engine.submit(order, instrument=INSTRUMENT, market=market, now=now)
        timings["submit"] += clock() - start
        ids.append(spec.id)
        open_ids.add(spec.id)
        target = ids[work.cancels[r]]
        if target in open_ids:
            start = clock()
            engine.cancel(target, now=now)
            timings["cancel"] += clock() - start
            open_ids.discard(target)
            cancels += 1
        quote = quotes[r]
        start = clock()
        updates = engine.on_market(quote, now=now)
        timings["quote"] += clock() - start
        for order_id, event in updates:
            if isinstance(event, Filled):
                fills += 1
                open_ids.discard(order_id)  # resting orders fill in full (rule M6)
    final = frozenset(o.id for o in engine.open_orders())
    if final != open_ids:
        print("error: the bench lost track of the engine's open orders")
    return timings, (final, fills, cancels)


def run_reference(work: Workload) -> tuple[Timings, Outcome]:
    book = NaiveBook(INSTRUMENT.maker_fee)
    for spec in work.initial:
        book.submit(spec)
    ids = [spec.id for spec in work.initial]
    open_ids = set(ids)
    timings: Timings = {"submit": 0.0, "cancel": 0.0, "quote": 0.0}
    cancels = 0
    for r, spec in enumerate(work.submits):
        start = clock()
        book.submit(spec)
        timings["submit"] += clock() - start
        ids.append(spec.id)
        open_ids.add(spec.id)
        target = ids[work.cancels[r]]
        if target in open_ids:
            start = clock()
            book.cancel(target)
            timings["cancel"] += clock() - start
            open_ids.discard(target)
            cancels += 1
        before = len(book.fills)
        last, bid, ask = work.quotes[r]
        start = clock()
        book.on_quote(last, bid, ask)
        timings["quote"] += clock() - start
        for order_id, *_ in book.fills[before:]:
            open_ids.discard(order_id)
    return timings, (frozenset(spec.id for spec in book.orders), len(book.fills), cancels)


def best(
    run: Callable[[Workload], tuple[Timings, Outcome]], work: Workload, repeat: int
) -> tuple[Timings, Outcome]:
    results = [run(work) for _ in range(repeat)]
    timings = {kind: min(t[kind] for t, _ in results) for kind in results[0][0]}
    return timings, results[0][1]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="resting orders before the rounds")
    parser.add_argument("--rounds", type=int, default=3000, help="rounds of submit + cancel + quote")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"PaperExchange vs a naive list-scan book: {args.rounds:,} rounds of submit + cancel + quote, "
        f"best of {args.repeat}"
    )
    ok = True
    for resting in sizes:
        work = workload(resting, args.rounds)
        engine_t, engine_out = best(run_engine, work, args.repeat)
        ref_t, ref_out = best(run_reference, work, args.repeat)
        agree = engine_out == ref_out
        ok &= agree
        _, fills, cancels = engine_out
        print(
            f"\n== {resting:,} resting orders at the start; {fills:,} fills, {cancels:,} cancels; "
            f"same open orders, fills and cancels as the reference: {'yes' if agree else 'NO'}"
        )
        print(f"  {'operation':10s} {'PaperExchange ops/s':>20s} {'reference ops/s':>16s} {'ratio':>8s}")
        counts = {"submit": args.rounds, "cancel": cancels, "quote": args.rounds}
        for kind in ("submit", "cancel", "quote"):
            _row(kind, counts[kind], engine_t[kind], ref_t[kind])
        _row("all", sum(counts.values()), sum(engine_t.values()), sum(ref_t.values()))
    print("\nratio = PaperExchange ops/s / reference ops/s (> 1: PaperExchange is faster)")
    return 0 if ok else 1


def _row(kind: str, count: int, engine_s: float, ref_s: float) -> None:
    engine_rate = count / engine_s if engine_s else float("inf")
    ref_rate = count / ref_s if ref_s else float("inf")
    print(f"  {kind:10s} {engine_rate:20,.0f} {ref_rate:16,.0f} {engine_rate / ref_rate:8.3g}x")


if __name__ == "__main__":
    sys.exit(main())
