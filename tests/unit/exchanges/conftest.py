"""Fixtures for the exchange adapter tests: fake time, a fake Binance, a client over it."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from cryptoorchestrator.exchanges.client import CcxtExchangeClient
from cryptoorchestrator.exchanges.ratelimit import RateBudgetRegistry
from cryptoorchestrator.testing.fake_exchange import FakeBinance
from tests.unit.exchanges.exchange_testkit import VirtualTime, make_client


@pytest.fixture
def vtime() -> VirtualTime:
    return VirtualTime()


@pytest.fixture
def registry(vtime: VirtualTime) -> RateBudgetRegistry:
    return RateBudgetRegistry(clock=vtime.clock, sleep=vtime.sleep, rng=random.Random(7))


@pytest.fixture
async def fake(vtime: VirtualTime) -> AsyncIterator[FakeBinance]:
    exchange = FakeBinance(clock=vtime.clock)
    yield exchange
    await exchange.close()


@pytest.fixture
async def client(fake: FakeBinance, registry: RateBudgetRegistry) -> AsyncIterator[CcxtExchangeClient]:
    exchange_client = make_client(fake, registry)
    yield exchange_client
    await exchange_client.close()
