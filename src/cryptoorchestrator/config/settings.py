"""Typed, frozen settings read from ``CO_*`` environment variables and an optional ``.env`` file.

Nothing here is built at import time: call :func:`load_settings` (the composition root does).
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cryptoorchestrator.core.errors import ConfigurationError

#: The secret shipped for development. The server refuses to start with it in production.
DEFAULT_SECRET_KEY = "dev-insecure-secret-key-change-me-0123456789abcdef"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything the platform can be configured with. See the README for the list."""

    model_config = SettingsConfigDict(
        env_prefix="CO_", env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    env: Environment = Environment.DEVELOPMENT
    debug: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    data_dir: Path = Path("data")
    database_url: str | None = None
    database_echo: bool = False
    redis_url: str | None = None

    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    encryption_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    jwt_algorithm: str = "HS256"
    access_token_minutes: int = Field(default=30, ge=1)
    refresh_token_days: int = Field(default=7, ge=1)
    # How long a checked session is trusted in-process before the database is asked again
    # (revocations in the same process apply at once; 0 turns the cache off).
    session_cache_seconds: float = Field(default=5.0, ge=0, le=60)
    # argon2id cost: OWASP's minimum is m=19 MiB, t=2; the defaults here are above it.
    password_hash_time_cost: int = Field(default=3, ge=1)
    password_hash_memory_kib: int = Field(default=65536, ge=8)
    password_hash_parallelism: int = Field(default=4, ge=1)

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_allow_credentials: bool = True

    rate_limit_enabled: bool = True
    rate_limit_default: str = "1000/minute"
    rate_limit_anonymous: str = "300/minute"
    rate_limit_auth: str = "5/minute"
    rate_limit_auth_account: str = "10/15minutes"
    rate_limit_market: str = "100/minute"
    rate_limit_trading: str = "50/minute"
    rate_limit_portfolio: str = "60/minute"
    rate_limit_strategies: str = "30/minute"
    rate_limit_ml: str = "20/minute"
    rate_limit_backtests: str = "10/minute"
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Market data: which exchange the platform reads by default, whether it may call it for
    # live tickers and books (off: everything is served from the store, replayed), and the
    # synthetic series generated on a first run with no data.
    market_data_exchange: str = "binance"
    market_data_live: bool = False
    replay_speed: float = Field(default=1.0, gt=0)
    synthetic_symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    )
    synthetic_timeframe: str = "1h"
    synthetic_data: bool = True
    exchange_timeout_ms: int = Field(default=10_000, ge=100)
    # Backtests: worker processes for the CPU work (0 = a thread in the server process), the
    # largest candle count one backtest may read, and a folder of user strategy files.
    backtest_workers: int = Field(default=2, ge=0, le=64)
    max_backtest_candles: int = Field(default=5_000_000, ge=1000)
    strategies_dir: Path | None = None
    jobs_concurrency: int = Field(default=2, ge=1, le=64)
    # Where jobs run: asyncio tasks in the server, or Celery workers (`cryptoorchestrator worker`).
    jobs_backend: Literal["inprocess", "celery"] = "inprocess"
    max_upload_mb: int = Field(default=200, ge=1)
    # Paper trading: the balances a new paper account starts with ("USDT:10000,BTC:0.5"), the
    # exchange whose prices it trades at (the market-data exchange by default), the slippage a
    # market order pays in basis points, and how often resting paper orders are checked
    # against the price (seconds; 0 = only when candles are fed in, as in tests).
    paper_starting_balances: Annotated[dict[str, Decimal], NoDecode] = Field(
        default_factory=lambda: {"USDT": Decimal(10000)}
    )
    paper_exchange: str | None = None
    paper_slippage_bps: Decimal = Field(default=Decimal(5), ge=0, le=1000)
    paper_poll_seconds: float = Field(default=2.0, ge=0)
    # Live trading: how often the open orders of exchange accounts are looked up at their
    # exchange, so fills, cancels and expiries that happen there are booked (seconds; 0 = never,
    # as in tests, which call the round themselves).
    live_poll_seconds: float = Field(default=10.0, ge=0)
    # Bot runtime (docs/design/bots.md): whether this process runs a bot runner (the API server
    # does by default; `cryptoorchestrator runner` runs one without the API), how many bots one
    # runner holds, its lease heartbeat and time to live (a dead runner's bots move after the
    # ttl), the candles a bot keeps for its strategy, and how often live candles are polled.
    runner_enabled: bool = True
    runner_capacity: int = Field(default=100, ge=1, le=10_000)
    bot_heartbeat_seconds: float = Field(default=5.0, gt=0)
    bot_lease_seconds: float = Field(default=15.0, gt=0)
    bot_candle_window: int = Field(default=1000, ge=2, le=100_000)
    bot_poll_seconds: float = Field(default=5.0, gt=0)

    log_level: str = "INFO"
    access_log: bool = True
    log_json: bool = True
    #: FastAPI's OpenTelemetry instrumentation (request spans, metrics, log correlation) for an
    #: operator who configures an OpenTelemetry SDK. Off by default: checking for it costs every
    #: request a few provider lookups, and nothing here configures a provider.
    opentelemetry: bool = False

    @field_validator("encryption_keys", "cors_origins", "trusted_proxies", "synthetic_symbols", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("paper_starting_balances", mode="before")
    @classmethod
    def _balances(cls, value: Any) -> Any:
        if isinstance(value, str):
            pairs = [item.partition(":") for item in _split_csv(value)]
            return {asset.strip().upper(): amount.strip() for asset, _, amount in pairs}
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'cryptoorchestrator.db').resolve()}"

    @property
    def candles_dir(self) -> Path:
        return self.data_dir / "candles"

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    def production_problems(self) -> list[str]:
        """Why this configuration must not serve production traffic (empty when it may)."""
        problems: list[str] = []
        secret = self.secret_key.get_secret_value()
        if not secret or secret == DEFAULT_SECRET_KEY:
            problems.append("CO_SECRET_KEY is missing or still the shipped default: set a random secret.")
        elif len(secret) < 32:
            problems.append("CO_SECRET_KEY is shorter than 32 characters.")
        if not self.encryption_keys:
            problems.append(
                "CO_ENCRYPTION_KEYS is not set: generate one with "
                "`cryptoorchestrator keys generate` so secrets at rest do not depend on CO_SECRET_KEY."
            )
        if "*" in self.cors_origins and self.cors_allow_credentials:
            problems.append("CO_CORS_ORIGINS='*' together with credentials is refused: list the origins.")
        if self.debug:
            problems.append("CO_DEBUG must be off in production.")
        return problems

    def check_startup(self) -> None:
        """Raise a ConfigurationError listing every reason the server must not start."""
        if self.is_production:
            problems = self.production_problems()
            if problems:
                raise ConfigurationError(
                    f"Refusing to start in production ({len(problems)} problem(s)):",
                    details={"problems": problems},
                )


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment (and ``.env``), with explicit overrides on top."""
    return Settings(**overrides)
