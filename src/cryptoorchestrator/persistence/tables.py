"""ORM tables. Rows never leave this package: repositories map them to domain records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from json.encoder import encode_basestring_ascii
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identities.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_TWO_DIGITS = tuple(f"{n:02d}" for n in range(100))
_DAY_TEXT: dict[date, str] = {}  # "YYYY-MM-DD " of the last few days stamped


def sqlite_datetime_text(value: datetime) -> str:
    """What a ``UTCDateTime`` column stores on SQLite (the dialect's ``DATETIME`` text of the UTC
    instant, ``YYYY-MM-DD HH:MM:SS.ffffff``): the same text as the column's bind processor, about
    four times as fast (the paper order batch writes a few per order): the day's text is kept,
    the time's two-digit fields are looked up."""
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
    day = value.date()
    prefix = _DAY_TEXT.get(day)
    if prefix is None:
        if len(_DAY_TEXT) >= 64:
            _DAY_TEXT.clear()
        prefix = _DAY_TEXT[day] = f"{day.isoformat()} "
    two = _TWO_DIGITS
    return f"{prefix}{two[value.hour]}:{two[value.minute]}:{two[value.second]}.{value.microsecond:06d}"


def json_strings_text(items: Iterable[str]) -> str:
    """``json.dumps(list(items))`` (what a ``JSON`` column stores for a list of strings), without
    the encoder's Python layers: the order batch writes one per order (its trade ids)."""
    return "[" + ", ".join(map(encode_basestring_ascii, items)) + "]"


def json_amounts_text(amounts: Mapping[str, Decimal]) -> str:
    """``json.dumps({asset: storable_text(amount)})`` with the assets sorted: what a ``JSON``
    column stores for an order's fees (see :func:`json_strings_text`)."""
    parts = [f'{encode_basestring_ascii(a)}: "{storable_text(amounts[a])}"' for a in sorted(amounts)]
    return "{" + ", ".join(parts) + "}"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    totp_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuthSessionRow(Base):
    """One login: the family of refresh tokens that rotate from it."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_reason: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))


class RefreshTokenRow(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditLogRow(Base):
    """Append-only: the migration installs triggers that refuse UPDATE and DELETE."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_actor_created", "actor_user_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    event: Mapped[str] = mapped_column(String(64), index=True)
    success: Mapped[bool] = mapped_column(Boolean)
    actor_user_id: Mapped[int | None] = mapped_column(BigInteger)
    target_user_id: Mapped[int | None] = mapped_column(BigInteger)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


#: Columns holding secrets encrypted with the SecretBox: (table, primary key column, column).
#: ``keys rotate`` re-encrypts every one of them; later features add their own here.
ENCRYPTED_COLUMNS: list[tuple[type[Base], str, str]] = [
    (UserRow, "id", "totp_secret_encrypted"),
]

__all__ = [
    "ENCRYPTED_COLUMNS",
    "NAMING_CONVENTION",
    "ApiKeyRow",
    "AuditLogRow",
    "AuthSessionRow",
    "BacktestRow",
    "Base",
    "JobRow",
    "RefreshTokenRow",
    "StrategyRow",
    "Text",
    "UserRow",
]


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_user_created", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    progress_percent: Mapped[float] = mapped_column(default=0.0)
    message: Mapped[str | None] = mapped_column(String(500))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class StrategyRow(Base):
    __tablename__ = "strategies"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_strategies_user_id_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    strategy_type: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BacktestRow(Base):
    __tablename__ = "backtests"
    __table_args__ = (Index("ix_backtests_user_created", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    strategy_id: Mapped[str | None] = mapped_column(ForeignKey("strategies.id", ondelete="SET NULL"))
    strategy_type: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    request: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- trading core (issue 5): accounts, orders, fills, ledger, positions, equity -------------------
#
# Money is ``Money`` below: NUMERIC(38, 18) on PostgreSQL, the canonical decimal string on SQLite
# (SQLite has no decimal type: a NUMERIC column there rounds to 15 significant digits).


_MONEY_CONTEXT = Context(prec=80, rounding=ROUND_HALF_EVEN)
_MONEY_SCALE = Decimal(1).scaleb(-18)
_MONEY_LIMIT = Decimal(10) ** 20
_ZERO = Decimal(0)


def _plain_text(value: Decimal) -> str:
    """A finite non-zero ``value`` in positional notation without trailing fractional zeros:
    the canonical text (string operations: ``as_tuple`` is several times slower)."""
    text = format(value, "f")  # positional, exact: no context rounding
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def canonical_decimal(value: Decimal | int | str) -> Decimal:
    """The canonical form of a number: no trailing fractional zeros, no exponent (``1E+1`` is
    ``10``, ``1.500`` is ``1.5``, every zero is ``0``). Exact: no context rounding."""
    if type(value) is not Decimal:
        value = Decimal(value)
    if not value.is_finite():
        raise ValueError(f"not a finite number: {value}")
    if not value:
        return _ZERO
    return Decimal(_plain_text(value))


def storable_text(value: Decimal | int | str) -> str:
    """The canonical text of ``value`` as a NUMERIC(38, 18) column keeps it (see
    :func:`storable_decimal`): what the SQLite column stores. String operations on the
    positional text (every order writes some twenty amounts through here, many of them zero)."""
    if type(value) is not Decimal:
        value = Decimal(value)
    if not value:  # any zero, -0 and 0E+30 included (NaN and infinities are true)
        return "0"
    text = format(value, "f")  # positional, exact
    point = text.find(".")
    if point < 0:
        if not text[-1].isdigit():  # NaN, sNaN, Infinity
            raise ValueError(f"not a finite number: {value}")
        digits = len(text)
    else:
        if len(text) - point > 19:  # more than 18 decimal places: round half-even
            value = value.quantize(_MONEY_SCALE, context=_MONEY_CONTEXT)
            text = format(value, "f")
            point = text.find(".")
        text = text.rstrip("0")
        if text[-1] == ".":
            text = text[:-1]
        digits = point  # of the integer part (positional text has no leading zeros but "0")
    if text[0] == "-":
        if text == "-0":
            return "0"
        digits -= 1
    if digits > 20:  # |value| >= 10**20
        raise ValueError(f"out of range for NUMERIC(38, 18): {value}")
    return text


def storable_decimal(value: Decimal | int | str) -> Decimal:
    """``value`` as a NUMERIC(38, 18) column keeps it, on every backend: rounded half-even to
    18 decimal places, canonical; more than 20 integer digits raise ``ValueError``."""
    text = storable_text(value)
    return _ZERO if text == "0" else Decimal(text)


class Money(TypeDecorator[Decimal]):
    """Exact decimals: NUMERIC(38, 18) on PostgreSQL, a decimal string on SQLite. Values come
    back in canonical form (:func:`canonical_decimal`) whichever backend stored them."""

    impl = Numeric(38, 18, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(38, 18, asdecimal=True))

    def process_bind_param(self, value: Decimal | int | str | None, dialect: Any) -> Any:
        if value is None:
            return None
        return storable_text(value) if dialect.name == "sqlite" else storable_decimal(value)

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        if value is None:
            return None
        return canonical_decimal(value if isinstance(value, str | Decimal | int) else str(value))

    @property
    def python_type(self) -> type[Decimal]:
        return Decimal


class TradingAccountRow(Base):
    __tablename__ = "trading_accounts"
    __table_args__ = (
        UniqueConstraint("user_id", "name", name="uq_trading_accounts_user_id_name"),
        # One paper account per user, even when two first uses race.
        Index(
            "uq_trading_accounts_one_paper",
            "user_id",
            unique=True,
            sqlite_where=text("kind = 'paper'"),
            postgresql_where=text("kind = 'paper'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    exchange: Mapped[str] = mapped_column(String(64))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    credentials_encrypted: Mapped[str | None] = mapped_column(Text)
    testnet: Mapped[bool] = mapped_column(Boolean, default=False)
    can_withdraw: Mapped[bool | None] = mapped_column(Boolean)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OrderRow(Base):
    """``fees`` maps asset -> decimal string; ``trade_ids`` is the sorted list of the trade ids
    applied (the fills table holds the fills themselves)."""

    __tablename__ = "orders"
    __table_args__ = (
        # The idempotency key: concurrent identical submissions create exactly one order.
        UniqueConstraint("account_id", "client_order_id", name="uq_orders_account_id_client_order_id"),
        Index("ix_orders_user_created", "user_id", "created_at"),
        Index("ix_orders_account_status", "account_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id", ondelete="CASCADE"))
    client_order_id: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(64))
    side: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    quantity: Mapped[Decimal] = mapped_column(Money())
    price: Mapped[Decimal | None] = mapped_column(Money())
    stop_price: Mapped[Decimal | None] = mapped_column(Money())
    time_in_force: Mapped[str] = mapped_column(String(8))
    reduce_only: Mapped[bool] = mapped_column(Boolean, default=False)
    stop_loss: Mapped[Decimal | None] = mapped_column(Money())
    take_profit: Mapped[Decimal | None] = mapped_column(Money())
    bot_id: Mapped[str | None] = mapped_column(String(64), index=True)
    parent_id: Mapped[str | None] = mapped_column(String(36))
    oco_group: Mapped[str | None] = mapped_column(String(64), index=True)
    exchange_order_id: Mapped[str | None] = mapped_column(String(128))
    filled_quantity: Mapped[Decimal] = mapped_column(Money())
    average_price: Mapped[Decimal | None] = mapped_column(Money())
    fees: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    trade_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    triggered: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text)
    locked_asset: Mapped[str | None] = mapped_column(String(32))
    locked_amount: Mapped[Decimal] = mapped_column(Money())
    fingerprint: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FillRow(Base):
    __tablename__ = "fills"
    __table_args__ = (
        # A fill delivered twice (websocket and REST, a replay) is stored once.
        UniqueConstraint("order_id", "trade_id", name="uq_fills_order_id_trade_id"),
        Index("ix_fills_user_timestamp", "user_id", "timestamp"),
        Index("ix_fills_account_symbol", "account_id", "symbol"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id", ondelete="CASCADE"))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    trade_id: Mapped[str] = mapped_column(String(128))
    symbol: Mapped[str] = mapped_column(String(64))
    side: Mapped[str] = mapped_column(String(8))
    price: Mapped[Decimal] = mapped_column(Money())
    quantity: Mapped[Decimal] = mapped_column(Money())
    fee: Mapped[Decimal] = mapped_column(Money())
    fee_asset: Mapped[str] = mapped_column(String(32))
    liquidity: Mapped[str] = mapped_column(String(8))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())
    realized_pnl: Mapped[Decimal | None] = mapped_column(Money())
    bot_id: Mapped[str | None] = mapped_column(String(64))
    strategy: Mapped[str | None] = mapped_column(String(100))


class LedgerEntryRow(Base):
    """Append-only: the migration installs triggers that refuse UPDATE, and DELETE while the
    account exists (deleting the account cascades to its entries)."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_account_asset_id", "account_id", "asset", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id", ondelete="CASCADE"))
    asset: Mapped[str] = mapped_column(String(32))
    free_delta: Mapped[Decimal] = mapped_column(Money())
    locked_delta: Mapped[Decimal] = mapped_column(Money())
    kind: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str | None] = mapped_column(String(128))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())


class BalanceRow(Base):
    """The materialised sum of an account's ledger entries, per asset."""

    __tablename__ = "balances"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("trading_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    asset: Mapped[str] = mapped_column(String(32), primary_key=True)
    free: Mapped[Decimal] = mapped_column(Money())
    locked: Mapped[Decimal] = mapped_column(Money())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PositionRow(Base):
    __tablename__ = "positions"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("trading_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[Decimal] = mapped_column(Money())
    entry_price: Mapped[Decimal | None] = mapped_column(Money())
    realized_pnl: Mapped[Decimal] = mapped_column(Money())
    fees_paid: Mapped[Decimal] = mapped_column(Money())
    leverage: Mapped[Decimal] = mapped_column(Money())
    margin: Mapped[Decimal] = mapped_column(Money())
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EquitySnapshotRow(Base):
    __tablename__ = "equity_snapshots"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("trading_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    equity: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(32))
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime())


ENCRYPTED_COLUMNS.append((TradingAccountRow, "id", "credentials_encrypted"))

__all__ += [
    "BalanceRow",
    "EquitySnapshotRow",
    "FillRow",
    "LedgerEntryRow",
    "Money",
    "OrderRow",
    "PositionRow",
    "TradingAccountRow",
    "canonical_decimal",
    "storable_decimal",
    "storable_text",
]


# --- bots (issue 6): bots, their events and the runners' leases ----------------------------------
#
# See docs/design/bots.md. ``risk`` holds decimals as strings (``BotRisk.to_json``); ``symbols`` is
# a JSON list; ``params`` and ``state`` are JSON objects.


class BotRow(Base):
    __tablename__ = "bots"
    __table_args__ = (
        UniqueConstraint("user_id", "name", name="uq_bots_user_id_name"),
        # An Idempotency-Key creates one bot per user, even when two requests race.
        UniqueConstraint("user_id", "idempotency_key", name="uq_bots_user_id_idempotency_key"),
        # One default bot per user (the seed-004 /bot/* routes act on it).
        Index(
            "uq_bots_one_default",
            "user_id",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    strategy_type: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    strategy_id: Mapped[str | None] = mapped_column(ForeignKey("strategies.id", ondelete="SET NULL"))
    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id", ondelete="CASCADE"))
    exchange: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(8))
    symbols: Mapped[list[str]] = mapped_column(JSON, default=list)
    timeframe: Mapped[str] = mapped_column(String(8))
    risk: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), index=True)
    desired: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_candle_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class BotEventRow(Base):
    __tablename__ = "bot_events"
    __table_args__ = (Index("ix_bot_events_bot_id_id", "bot_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    bot_id: Mapped[str] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())


class BotLeaseRow(Base):
    """Which runner holds a bot; taken and renewed by single atomic statements."""

    __tablename__ = "bot_leases"

    bot_id: Mapped[str] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"), primary_key=True)
    runner_id: Mapped[str] = mapped_column(String(128), index=True)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


__all__ += ["BotEventRow", "BotLeaseRow", "BotRow"]
