"""Fixtures for the trading API: an app with the synthetic first-run series of BTC/USDT and
ETH/USDT (labelled synthetic), no price poller (tests feed candles themselves)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from cryptoorchestrator.bootstrap import Container
from cryptoorchestrator.simulator.matching import Bar
from tests.conftest import client_for


@dataclass
class Trading:
    http: httpx.AsyncClient
    container: Container

    @property
    def exchange(self) -> str:
        return self.container.accounts.paper_exchange

    async def price(self, symbol: str = "BTC/USDT") -> Decimal:
        return (await self.container.paper.quote(self.exchange, symbol)).last

    async def bar(
        self,
        symbol: str = "BTC/USDT",
        *,
        low: Decimal,
        high: Decimal,
        close: Decimal | None = None,
        open_: Decimal | None = None,
    ) -> dict[str, Any]:
        """Feed one closed candle into the paper venue (its close becomes the paper price)."""
        open_price = open_ if open_ is not None else (low + high) / 2
        close_price = close if close is not None else (low + high) / 2
        bar = Bar(
            symbol=symbol,
            open=open_price,
            high=high,
            low=low,
            close=close_price,
            volume=Decimal(1000),
            timestamp=self.container.clock.now(),
        )
        return await self.container.trading.feed(self.exchange, bar)


@pytest.fixture
async def trading(app_factory: Any) -> Trading:
    app, container = await app_factory(
        synthetic_data=True, synthetic_symbols=["BTC/USDT", "ETH/USDT"], paper_poll_seconds=0
    )
    async with client_for(app) as http:
        yield Trading(http, container)
