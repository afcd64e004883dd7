"""The persistence ports the services depend on. ``persistence`` implements them; ``bootstrap``
wires the implementation in; tests may substitute their own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any, Protocol, Self

from cryptoorchestrator.domain.accounts import (
    AccountSnapshot,
    BatchChanges,
    EquitySnapshot,
    TradeRecord,
    TradingAccount,
)
from cryptoorchestrator.domain.bots import Bot, BotEvent, BotLease
from cryptoorchestrator.domain.identity import (
    ApiKey,
    ApiKeySecret,
    AuditEvent,
    AuthSession,
    RefreshTokenRecord,
    Role,
    Scope,
    User,
    UserCredentials,
)
from cryptoorchestrator.domain.jobs import Job
from cryptoorchestrator.domain.ledger import AssetBalance, LedgerEntry
from cryptoorchestrator.domain.orders import Order, OrderStatus, OrderType
from cryptoorchestrator.domain.positions import Position
from cryptoorchestrator.domain.research import BacktestRecord, SavedStrategy


class UserRepository(Protocol):
    async def add(
        self,
        *,
        username: str,
        email: str,
        password_hash: str,
        role: Role,
        first_name: str | None,
        last_name: str | None,
        now: datetime,
    ) -> User: ...

    async def get(self, user_id: int) -> User | None: ...

    async def get_credentials(self, user_id: int) -> UserCredentials | None: ...

    async def find_credentials_by_login(self, login: str) -> UserCredentials | None: ...

    async def exists(self, *, username: str | None = None, email: str | None = None) -> bool: ...

    async def update(self, user_id: int, *, now: datetime, **fields: Any) -> User: ...

    async def list(self, *, limit: int, offset: int, search: str | None = None) -> tuple[list[User], int]: ...

    async def get_preferences(self, user_id: int) -> dict[str, Any]: ...

    async def set_preferences(self, user_id: int, preferences: dict[str, Any], *, now: datetime) -> None: ...

    async def count_admins(self) -> int: ...

    async def encrypted_totp_secrets(self) -> list[tuple[int, str]]: ...


class SessionRepository(Protocol):
    async def add_session(
        self, *, session_id: str, user_id: int, now: datetime, expires_at: datetime, meta_ip: str | None
    ) -> AuthSession: ...

    async def get_session(self, session_id: str) -> AuthSession | None: ...

    async def get_active_session_user(self, session_id: str, user_id: int) -> User | None: ...

    async def revoke_session(self, session_id: str, *, now: datetime, reason: str) -> None: ...

    async def revoke_all_for_user(self, user_id: int, *, now: datetime, reason: str) -> int: ...

    async def add_refresh_token(
        self, *, token_id: str, session_id: str, user_id: int, expires_at: datetime
    ) -> None: ...

    async def mark_refresh_token_used(self, token_id: str, *, now: datetime) -> bool: ...

    async def get_refresh_token(self, token_id: str) -> RefreshTokenRecord | None: ...


class ApiKeyRepository(Protocol):
    async def add(
        self,
        *,
        user_id: int,
        name: str,
        prefix: str,
        digest: str,
        scopes: frozenset[Scope],
        now: datetime,
        expires_at: datetime | None,
    ) -> ApiKey: ...

    async def list_for_user(self, user_id: int, *, limit: int, offset: int) -> tuple[list[ApiKey], int]: ...

    async def get_for_user(self, key_id: int, user_id: int) -> ApiKey | None: ...

    async def find_by_prefix(self, prefix: str) -> ApiKeySecret | None: ...

    async def revoke(self, key_id: int, *, now: datetime) -> None: ...

    async def touch(self, key_id: int, *, now: datetime) -> None: ...


class AuditRepository(Protocol):
    async def add(self, event: AuditEvent) -> None: ...

    async def list(
        self, *, limit: int, offset: int, user_id: int | None = None, event: str | None = None
    ) -> tuple[list[AuditEvent], int]: ...


class JobRepository(Protocol):
    async def add(
        self, *, job_id: str, user_id: int, kind: str, params: dict[str, Any], now: datetime
    ) -> Job: ...

    async def get(self, job_id: str) -> Job | None: ...

    async def get_for_user(self, job_id: str, user_id: int) -> Job | None: ...

    async def list_for_user(
        self, user_id: int, *, limit: int, offset: int, status: str | None = None, kind: str | None = None
    ) -> tuple[list[Job], int]: ...

    async def update(self, job_id: str, **fields: Any) -> None: ...

    async def delete(self, job_id: str) -> None: ...

    async def active(self) -> list[Job]: ...


class StrategyRepository(Protocol):
    async def add(self, record: SavedStrategy) -> SavedStrategy: ...

    async def get_for_user(self, strategy_id: str, user_id: int) -> SavedStrategy | None: ...

    async def name_taken(self, user_id: int, name: str, *, except_id: str | None = None) -> bool: ...

    async def list_for_user(
        self, user_id: int, *, limit: int, offset: int
    ) -> tuple[list[SavedStrategy], int]: ...

    async def update(self, strategy_id: str, *, now: datetime, **fields: Any) -> SavedStrategy: ...

    async def delete(self, strategy_id: str) -> None: ...


class BacktestRepository(Protocol):
    async def add(self, record: BacktestRecord) -> BacktestRecord: ...

    async def get(self, backtest_id: str) -> BacktestRecord | None: ...

    async def get_for_user(self, backtest_id: str, user_id: int) -> BacktestRecord | None: ...

    async def list_for_user(
        self, user_id: int, *, limit: int, offset: int
    ) -> tuple[list[BacktestRecord], int]: ...

    async def set_job(self, backtest_id: str, job_id: str) -> None: ...

    async def set_results(
        self, backtest_id: str, *, metrics: dict[str, Any], summary: dict[str, Any]
    ) -> None: ...

    async def delete(self, backtest_id: str) -> None: ...


class EncryptedSecretRepository(Protocol):
    """Every column that holds a secret encrypted with the SecretBox (for key rotation)."""

    async def all(self) -> list[tuple[str, Any, str, str]]: ...

    async def replace(self, table: str, key: Any, column: str, ciphertext: str) -> None: ...


class UnitOfWork(Protocol):
    """One transaction. Services own it: ``async with uow_factory() as uow: ...; await uow.commit()``.

    Leaving the block without ``commit`` rolls back."""

    users: UserRepository
    sessions: SessionRepository
    api_keys: ApiKeyRepository
    audit: AuditRepository
    secrets: EncryptedSecretRepository
    jobs: JobRepository
    strategies: StrategyRepository
    backtests: BacktestRepository
    accounts: TradingAccountRepository
    orders: OrderRepository
    fills: FillRepository
    ledger: LedgerRepository
    positions: PositionRepository
    equity: EquityRepository
    bots: BotRepository
    bot_events: BotEventRepository
    bot_leases: BotLeaseRepository

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class HealthProbe(Protocol):
    async def ping(self) -> None: ...


__all__: Sequence[str] = (
    "ApiKeyRepository",
    "AuditRepository",
    "EncryptedSecretRepository",
    "EquityRepository",
    "FillRepository",
    "HealthProbe",
    "JobRepository",
    "LedgerRepository",
    "OrderRepository",
    "PositionRepository",
    "SessionRepository",
    "TradingAccountRepository",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "UserRepository",
)


# --- trading core (issue 5) -----------------------------------------------------------------------
# Money is exact (Decimal in, the equal Decimal out, canonical: no trailing zeros, no exponent;
# rounded half-even to 18 decimal places). Time filters are half-open: ``start <= t < end``.
# Listings answer ``(records, total)``, newest first.


class TradingAccountRepository(Protocol):
    async def add(self, account: TradingAccount) -> TradingAccount: ...

    async def get(self, account_id: str) -> TradingAccount | None: ...

    async def get_for_user(self, account_id: str, user_id: int) -> TradingAccount | None: ...

    async def paper_for_user(self, user_id: int) -> TradingAccount | None: ...

    async def list_for_user(
        self, user_id: int, *, kind: str | None = None, limit: int, offset: int
    ) -> tuple[list[TradingAccount], int]: ...

    async def update(self, account_id: str, *, now: datetime, **fields: Any) -> TradingAccount: ...

    async def delete(self, account_id: str) -> None: ...

    async def holding(self) -> list[TradingAccount]:
        """The active accounts of every user with a non-zero balance (free or locked)."""
        ...


class OrderRepository(Protocol):
    async def add(self, order: Order) -> bool:
        """False (and nothing written) when the account already has this ``client_order_id``."""
        ...

    async def get(self, order_id: str) -> Order | None: ...

    async def get_for_user(self, order_id: str, user_id: int) -> Order | None: ...

    async def get_by_client_id(self, account_id: str, client_order_id: str) -> Order | None: ...

    async def lock_for_update(self, order_id: str) -> Order | None: ...

    async def save(self, order: Order) -> None: ...

    async def list_for_user(
        self,
        user_id: int,
        *,
        symbol: str | None = None,
        status: OrderStatus | str | Sequence[OrderStatus | str] | None = None,
        bot_id: str | None = None,
        account_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int,
        offset: int,
    ) -> tuple[list[Order], int]: ...

    async def open_orders(
        self,
        *,
        account_id: str | None = None,
        symbol: str | None = None,
        kinds: Sequence[str] | None = None,
        types: Sequence[OrderType | str] | None = None,
    ) -> list[Order]:
        """Open orders of every user, oldest first; ``kinds`` filters on the account kind."""
        ...


class FillRepository(Protocol):
    async def add(self, record: TradeRecord) -> bool:
        """False (and nothing written) when the order already has a fill with this ``trade_id``."""
        ...

    async def get_for_user(self, fill_id: str, user_id: int) -> TradeRecord | None: ...

    async def for_order(self, order_id: str) -> list[TradeRecord]: ...

    async def list_for_user(
        self,
        user_id: int,
        *,
        symbol: str | None = None,
        bot_id: str | None = None,
        account_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int,
        offset: int,
    ) -> tuple[list[TradeRecord], int]: ...

    async def summary_for_user(
        self,
        user_id: int,
        *,
        symbol: str | None = None,
        bot_id: str | None = None,
        account_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> dict[str, Any]:
        """``count``, ``closing_count``, ``wins``, ``losses`` (int); ``realized_pnl``,
        ``gross_profit``, ``gross_loss`` (Decimal, the loss <= 0); ``fees`` (asset -> Decimal)."""
        ...


class LedgerRepository(Protocol):
    async def balances(self, account_id: str) -> dict[str, AssetBalance]: ...

    async def balances_for_update(self, account_id: str) -> dict[str, AssetBalance]: ...

    async def record(
        self,
        account_id: str,
        entries: Sequence[LedgerEntry],
        balances: Mapping[str, AssetBalance],
        *,
        now: datetime,
    ) -> None: ...

    async def entries(
        self, account_id: str, *, asset: str | None = None, limit: int, offset: int
    ) -> tuple[list[LedgerEntry], int]: ...

    async def entry_sums(self, account_id: str) -> dict[str, tuple[Decimal, Decimal]]: ...


class PositionRepository(Protocol):
    async def get(self, account_id: str, symbol: str) -> Position | None: ...

    async def save(self, position: Position) -> None: ...

    async def list_for_user(
        self,
        user_id: int,
        *,
        account_id: str | None = None,
        symbol: str | None = None,
        open_only: bool = True,
    ) -> list[Position]: ...

    async def list(
        self, account_id: str | Sequence[str], *, symbol: str | None = None, open_only: bool = True
    ) -> list[Position]: ...


class OrderBatchTransaction(Protocol):
    """One transaction over one account (the paper group commit, ``services/paper_batches``):
    ``load`` takes the account's write lock and reads its state, ``write`` stores the batch and
    commits. Leaving without ``write`` rolls everything back."""

    async def load(
        self, account_id: str, symbols: Sequence[str], client_order_ids: Sequence[str]
    ) -> AccountSnapshot: ...

    async def write(self, changes: BatchChanges) -> None:
        """Store ``changes`` and commit. Raises ``Conflict`` when an order's client order id was
        taken meanwhile (nothing is stored then)."""
        ...


class OrderBatchStore(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[OrderBatchTransaction]: ...


class EquityRepository(Protocol):
    async def upsert(self, snapshot: EquitySnapshot) -> None: ...

    async def list(self, account_id: str, *, since: date | None = None) -> list[EquitySnapshot]: ...


# --- bots (issue 6): docs/design/bots.md -----------------------------------------------------------
# The service writes what the user asks (configuration, ``desired``); the runner writes what the bot
# does (``status``, ``error``, ``started_at``, ``stopped_at``, ``last_candle_at``, ``state``).


class BotRepository(Protocol):
    async def add(
        self, bot: Bot, *, idempotency_key: str | None = None, request_hash: str | None = None
    ) -> Bot: ...

    async def get(self, bot_id: str) -> Bot | None: ...

    async def get_for_user(self, bot_id: str, user_id: int) -> Bot | None: ...

    async def default_for_user(self, user_id: int) -> Bot | None: ...

    async def get_by_idempotency_key(self, user_id: int, key: str) -> tuple[Bot, str | None] | None:
        """The bot created under this Idempotency-Key and the request hash stored with it."""
        ...

    async def get_by_name(self, user_id: int, name: str) -> Bot | None:
        """The user's bot called ``name`` (names are unique per user)."""
        ...

    async def list_for_user(
        self,
        user_id: int,
        *,
        status: str | None = None,
        exchange: str | None = None,
        mode: str | None = None,
        limit: int,
        offset: int,
    ) -> tuple[list[Bot], int]:
        """Newest first."""
        ...

    async def wanted_running(self) -> list[Bot]:
        """Desired running or paused, every user, oldest first."""
        ...

    async def update(self, bot_id: str, *, now: datetime, **fields: Any) -> Bot:
        """Writes only ``fields`` (and ``updated_at``); NotFound when the bot is gone."""
        ...

    async def delete(self, bot_id: str) -> None:
        """With its events and lease; its orders and fills stay."""
        ...


class BotEventRepository(Protocol):
    async def add(self, event: BotEvent) -> BotEvent: ...

    async def list_for_bot(
        self,
        bot_id: str,
        *,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int,
        offset: int,
    ) -> tuple[list[BotEvent], int]:
        """Newest first; ``since`` inclusive."""
        ...

    async def count_since(self, bot_id: str, *, kind: str, since: datetime) -> int: ...


class BotLeaseRepository(Protocol):
    async def acquire(self, bot_id: str, runner_id: str, *, now: datetime, ttl: timedelta) -> bool:
        """Take the lease when nobody holds it, it expired, or runner_id already holds it
        (then renew). One atomic statement; True when runner_id holds it afterwards."""
        ...

    async def renew(self, runner_id: str, *, now: datetime, ttl: timedelta) -> list[str]:
        """Extend every lease runner_id holds; return their bot ids (a lost lease is absent)."""
        ...

    async def release(self, bot_id: str, runner_id: str) -> None: ...

    async def holder(self, bot_id: str, *, now: datetime) -> BotLease | None:
        """Unexpired leases only."""
        ...


__all__ = (*__all__, "BotEventRepository", "BotLeaseRepository", "BotRepository")
