"""Trading accounts and portfolio snapshots as plain records (stdlib only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class TradingAccount:
    """Where orders go: the user's paper account (``kind="paper"``, one per user, created on
    first use) or an exchange account with encrypted credentials (``kind="exchange"``).

    ``credentials_encrypted`` is the SecretBox ciphertext of a JSON object; it never leaves
    the services layer in clear. ``settings`` holds paper starting balances, fee overrides...
    """

    id: str
    user_id: int
    kind: str
    name: str
    exchange: str
    created_at: datetime
    updated_at: datetime
    settings: dict[str, Any] = field(default_factory=dict)
    credentials_encrypted: str | None = None
    testnet: bool = False
    can_withdraw: bool | None = None
    active: bool = True


@dataclass(frozen=True, slots=True)
class EquitySnapshot:
    """The account's value in its quote currency at the end of ``day`` (UTC)."""

    account_id: str
    day: date
    equity: Decimal
    currency: str
    taken_at: datetime


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """A stored fill with what the platform knows about it: whose it was and, for a fill that
    reduced a position, the P&L it realised (quote asset, fees excluded)."""

    id: str
    user_id: int
    account_id: str
    order_id: str
    trade_id: str
    symbol: str
    side: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    liquidity: str
    timestamp: datetime
    realized_pnl: Decimal | None = None
    bot_id: str | None = None
    strategy: str | None = None
