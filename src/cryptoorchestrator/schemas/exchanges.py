"""Exchange and exchange-account wire models.

Credentials go in (``POST /exchanges/accounts``) and never come out: responses carry a masked
key hint at most. Secrets are ``SecretStr`` so that no repr, log line or error echoes them.
Seed aliases are accepted: ``exchange_name``/``exchange``, ``api_secret``/``secret``,
``passphrase``/``password``, ``sandbox``/``testnet``, ``label``/``name``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, field_validator

from cryptoorchestrator.schemas.common import Page, RequestModel, ResponseModel

_EXCHANGE_ID = re.compile(r"^[a-z0-9_.\-]{2,64}$")
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")


class ExchangeAccountCreate(RequestModel):
    """``POST /exchanges/accounts``: connect an exchange account with an API key."""

    exchange: str = Field(
        min_length=2,
        max_length=64,
        description="ccxt's exchange id (`binance`, `kraken`, `coinbase`...); GET /exchanges lists them.",
        validation_alias=AliasChoices(
            "exchange", "exchange_name", "exchangeName", "exchange_id", "exchangeId"
        ),
    )
    api_key: SecretStr = Field(
        min_length=1, max_length=512, validation_alias=AliasChoices("api_key", "apiKey", "key")
    )
    secret: SecretStr = Field(
        min_length=1,
        max_length=8192,
        description="The API secret (or private key, for venues that sign with one).",
        validation_alias=AliasChoices("secret", "api_secret", "apiSecret", "secret_key", "secretKey"),
    )
    password: SecretStr | None = Field(
        default=None,
        max_length=512,
        description="The passphrase, for exchanges whose keys have one (OKX, KuCoin, Coinbase...).",
        validation_alias=AliasChoices("password", "passphrase", "api_passphrase", "apiPassphrase"),
    )
    testnet: bool = Field(
        default=False,
        description="Use the exchange's sandbox / testnet.",
        validation_alias=AliasChoices("testnet", "sandbox", "is_testnet", "isTestnet"),
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="A name unique among your accounts; the exchange id (then `-2`, `-3`...) by default.",
        validation_alias=AliasChoices("name", "label", "account_name", "accountName"),
    )

    @field_validator("exchange", mode="before")
    @classmethod
    def _exchange_id(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().lower()
            if not _EXCHANGE_ID.match(text):
                raise ValueError("an exchange id is 2-64 lower-case letters, digits, '_', '-' or '.'")
            return text
        return value

    @field_validator("api_key", "secret", "password")
    @classmethod
    def _no_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("a name is 1-100 printable characters")
        return value


class AccountWarningOut(ResponseModel):
    code: str = Field(examples=["WITHDRAW_ENABLED"])
    message: str


class ExchangeAccountOut(ResponseModel):
    """A trading account: the paper account or an exchange account. Never a credential."""

    id: str
    account_id: str = Field(description="The same as `id`.")
    name: str
    kind: str = Field(description="`paper` or `exchange`.")
    mode: str = Field(description="`paper` or `live`.")
    exchange: str
    testnet: bool
    status: str = Field(description="`active`.")
    verified: bool | None = Field(
        description="Whether the exchange accepted the credentials (false: it was not reachable)."
    )
    verified_at: datetime | None
    can_withdraw: bool | None = Field(description="Whether the key may withdraw funds; null when unknown.")
    key_hint: str | None = Field(description="The API key masked (`abcd…wxyz`).", examples=["abcd…wxyz"])
    has_passphrase: bool
    balances_synced_at: datetime | None
    warnings: list[AccountWarningOut]
    created_at: datetime
    updated_at: datetime


class ExchangeAccountsPage(Page[ExchangeAccountOut]):
    pass


class ExchangeOut(ResponseModel):
    id: str = Field(examples=["binance"])
    name: str
    kind: str = Field(description="`paper` or `exchange`.")
    connected: bool = Field(description="Whether you have an account on it.")
    account_ids: list[str]


class ExchangesPage(Page[ExchangeOut]):
    pass


class ExchangeStatusOut(ResponseModel):
    exchange: str
    reachable: bool
    status: str = Field(description="`ok`, `unreachable`, or `error` (it answered with an error).")
    latency_ms: float | None = Field(description="Round trip of one public request, in milliseconds.")
    server_time: datetime | None
    markets: int | None = Field(description="How many markets the exchange lists.")
    checked_at: datetime
    error: dict[str, str] | None = Field(default=None, description="`code` and `message` when not ok.")
