"""Trading accounts and portfolio snapshots as plain records (stdlib only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptoorchestrator.domain.ledger import AssetBalance, LedgerEntry
    from cryptoorchestrator.domain.orders import Order
    from cryptoorchestrator.domain.positions import Position


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


@dataclass(slots=True)
class AccountSnapshot:
    """What a batch of one account's orders starts from, read under the account's write lock:
    its balances, its positions in the batch's symbols (``None`` where it has none) and the
    orders already stored under the batch's client order ids."""

    balances: dict[str, AssetBalance]
    positions: dict[str, Position | None]
    by_client_id: dict[str, Order]


@dataclass(slots=True)
class BatchChanges:
    """Everything a batch writes, in one transaction: ``orders`` are inserted in their final
    state (a batch only books events about its own new orders), ``balances`` are the new
    balances of the assets the ``entries`` moved."""

    account_id: str
    now: datetime
    orders: list[Order] = field(default_factory=list)
    fills: list[TradeRecord] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)
    entries: list[LedgerEntry] = field(default_factory=list)
    balances: dict[str, AssetBalance] = field(default_factory=dict)
