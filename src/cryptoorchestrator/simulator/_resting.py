"""The resting side of the paper exchange: price-ordered queues of order ids per symbol.

A price update only has to look at the orders it can reach: buy limits are kept highest price
first, sell limits lowest first, buy stops lowest first and sell stops highest first, so a
quote or a bar pops exactly the orders it crosses (``O(k log n)`` for ``k`` crossed out of ``n``
resting) instead of scanning them all. Removal is lazy (a cancel only forgets the id; the heap
entry is skipped when it surfaces) and the heap is rebuilt when dead entries outnumber the live
ones, so submit/cancel churn does not grow it without bound.
"""

from __future__ import annotations

import heapq
from decimal import Decimal

from cryptoorchestrator.domain.orders import OrderSide

_COMPACT_MIN = 64


class PriceQueue:
    """A min-heap of ``(key, seq, order_id)``: ``seq`` (arrival order) breaks price ties."""

    __slots__ = ("_dead", "_heap", "_live")

    def __init__(self) -> None:
        self._heap: list[tuple[Decimal, int, str]] = []
        self._live: dict[str, int] = {}  # order id -> seq of its live heap entry
        self._dead = 0

    def __len__(self) -> int:
        return len(self._live)

    def push(self, key: Decimal, seq: int, order_id: str) -> None:
        self._live[order_id] = seq
        heapq.heappush(self._heap, (key, seq, order_id))

    def discard(self, order_id: str) -> None:
        if self._live.pop(order_id, None) is not None:
            self._dead += 1
            if self._dead > _COMPACT_MIN and self._dead > len(self._live):
                self._compact()

    def pop_through(self, bound: Decimal) -> list[tuple[int, str]]:
        """Remove and return ``(seq, order_id)`` of every live entry whose key is ``<= bound``."""
        heap, live = self._heap, self._live
        out: list[tuple[int, str]] = []
        while heap and heap[0][0] <= bound:
            _, seq, order_id = heapq.heappop(heap)
            # An entry is live only while the id still maps to this seq: a discarded id that
            # came back later (restore) must not revive its old entry.
            if live.get(order_id) == seq:
                del live[order_id]
                out.append((seq, order_id))
            else:
                self._dead -= 1
        return out

    def _compact(self) -> None:
        live = self._live
        self._heap = [entry for entry in self._heap if live.get(entry[2]) == entry[1]]
        heapq.heapify(self._heap)
        self._dead = 0


class SymbolBook:
    """The resting orders of one symbol in four queues (see the module docstring)."""

    __slots__ = ("buy_limits", "buy_stops", "sell_limits", "sell_stops")

    def __init__(self) -> None:
        self.buy_limits = PriceQueue()  # key -price: the highest bid surfaces first
        self.sell_limits = PriceQueue()  # key price
        self.buy_stops = PriceQueue()  # key stop: the lowest buy stop triggers first
        self.sell_stops = PriceQueue()  # key -stop

    def __len__(self) -> int:
        return len(self.buy_limits) + len(self.sell_limits) + len(self.buy_stops) + len(self.sell_stops)

    def add_limit(self, order_id: str, seq: int, side: OrderSide, price: Decimal) -> None:
        if side is OrderSide.BUY:
            self.buy_limits.push(-price, seq, order_id)
        else:
            self.sell_limits.push(price, seq, order_id)

    def add_stop(self, order_id: str, seq: int, side: OrderSide, stop: Decimal) -> None:
        if side is OrderSide.BUY:
            self.buy_stops.push(stop, seq, order_id)
        else:
            self.sell_stops.push(-stop, seq, order_id)

    def discard(self, order_id: str) -> None:
        for queue in (self.buy_limits, self.sell_limits, self.buy_stops, self.sell_stops):
            queue.discard(order_id)

    def pop_stops(self, *, lowest: Decimal, highest: Decimal) -> list[tuple[int, str]]:
        """Stops the prices ``lowest..highest`` trigger: buy stops ``<= highest``, sell stops
        ``>= lowest``."""
        return self.buy_stops.pop_through(highest) + self.sell_stops.pop_through(-lowest)

    def pop_limits(self, *, lowest: Decimal, highest: Decimal) -> list[tuple[int, str]]:
        """Limits the prices reach: buy limits ``>= lowest``, sell limits ``<= highest``."""
        return self.buy_limits.pop_through(-lowest) + self.sell_limits.pop_through(highest)
