"""Exchange accounts: connect one (check the credentials, encrypt them, sync the ledger), list,
delete; the exchanges a user can connect and whether a venue is reachable.

Rules this module implements (issue 6):

* *Credentials never leave in clear*: they are encrypted with the SecretBox before anything
  else happens and only the ciphertext is stored; responses carry a masked key hint at most;
  log lines carry ids and flags only; an error raised while checking them has every credential
  value scrubbed from its message and details (the adapter redacts too; this is the backstop).
* *Check before storing*: the credentials are tried against the exchange (a balance fetch
  through the live execution client built for the new account). Refused: 400
  ``EXCHANGE_AUTH_FAILED`` and nothing is stored. Unreachable: stored ``verified: false`` with a
  warning (it is checked again on first use). Accepted: stored ``verified: true``, the ledger
  set to the exchange's balances, and ``can_withdraw`` from the key's permissions, with a
  warning when the key can withdraw.
* *Idempotency*: a repeated ``Idempotency-Key`` with the same body returns the account created
  the first time; with a different body, 409 ``CONFLICT``. Account names are unique per user.
* *Deletion* is refused (409) while the account has open orders or any of the
  :attr:`ExchangeAccountService.deletion_guards` objects (bots plug in there). A deleted
  account keeps its history (orders, fills, P&L) but loses its credentials and its name.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import (
    Conflict,
    CryptoOrchestratorError,
    ExchangeAuthenticationError,
    ExchangeNotSupported,
    NotFound,
    TransientError,
)
from cryptoorchestrator.core.ids import new_uuid
from cryptoorchestrator.domain.accounts import TradingAccount
from cryptoorchestrator.domain.market import MarketInfo, Ticker
from cryptoorchestrator.services.accounts import PAPER, AccountService
from cryptoorchestrator.services.execution import LiveExecution
from cryptoorchestrator.services.orders import OrderService
from cryptoorchestrator.services.ports import UnitOfWorkFactory

EXCHANGE = "exchange"
#: How long an ``Idempotency-Key`` answers with the account it created.
IDEMPOTENCY_WINDOW = timedelta(hours=24)
MAX_NAME_LENGTH = 100
_SCRUB_MIN_LENGTH = 4
_PREFERRED_PROBE_SYMBOLS = ("BTC/USDT", "BTC/USD", "ETH/USDT", "ETH/BTC")


class CredentialBox(Protocol):
    """The SecretBox (``security.encryption``): encrypts and decrypts short secrets."""

    def encrypt(self, plaintext: str) -> str: ...

    def decrypt(self, token: str) -> str: ...


class StatusSource(Protocol):
    """A public (credential-free) exchange client: ``exchanges.CcxtExchangeClient``."""

    async def load_markets(self, reload: bool = False) -> Mapping[str, MarketInfo]: ...

    async def fetch_ticker(self, symbol: str) -> Ticker: ...

    async def close(self) -> None: ...


class MarketCatalog(Protocol):
    """The market-data service, for the paper venue's markets."""

    async def markets(self, exchange: str | None = None) -> Sequence[Any]: ...


#: A check another feature adds before an account may be deleted: the reason it may not
#: (``"used by bot 'grid-1'"``), or ``None`` when it does not object.
DeletionGuard = Callable[[TradingAccount], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Credentials:
    """API credentials in clear; they live in memory only while an account is connected."""

    api_key: str
    secret: str = field(repr=False)
    password: str | None = field(default=None, repr=False)

    def to_json(self) -> str:
        body = {"api_key": self.api_key, "secret": self.secret}
        if self.password:
            body["password"] = self.password
        return json.dumps(body, sort_keys=True)

    def values(self) -> tuple[str, ...]:
        return tuple(v for v in (self.api_key, self.secret, self.password) if v)


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    exchange: str
    credentials: Credentials
    name: str | None = None
    testnet: bool = False
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class AccountWarning:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ExchangeAccountView:
    """An account as the API shows it: never a credential, not even encrypted."""

    account: TradingAccount
    verified: bool | None
    verified_at: datetime | None
    key_hint: str | None
    has_passphrase: bool
    balances_synced_at: datetime | None
    warnings: tuple[AccountWarning, ...]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class ExchangeEntry:
    id: str
    kind: str
    connected: bool
    account_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExchangeStatus:
    exchange: str
    reachable: bool
    status: str
    checked_at: datetime
    latency_ms: float | None = None
    server_time: datetime | None = None
    markets: int | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class _Verification:
    verified: bool
    can_withdraw: bool | None = None
    reason: str | None = None


def key_hint(api_key: str) -> str:
    """``abcd…wxyz`` for a key long enough that eight characters leave most of it hidden."""
    if len(api_key) >= 20:
        return f"{api_key[:4]}…{api_key[-4:]}"
    return "…"


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= _SCRUB_MIN_LENGTH:
            text = text.replace(secret, "***")
    return text


def _scrub_value(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, Mapping):
        return {key: _scrub_value(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(item, secrets) for item in value]
    return value


def scrubbed(error: CryptoOrchestratorError, secrets: tuple[str, ...]) -> CryptoOrchestratorError:
    """``error`` with every credential value removed from its message and details."""
    error.message = scrub(error.message, secrets)
    error.details = _scrub_value(error.details, secrets)
    error.args = (error.message,)
    return error


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


class ExchangeAccountService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        *,
        clock: Clock,
        accounts: AccountService,
        orders: OrderService,
        secret_box: CredentialBox,
        execution_for: Callable[[TradingAccount], LiveExecution],
        release_venue: Callable[[str], Awaitable[None]],
        supported_exchanges: Callable[[], Iterable[str]],
        public_client: Callable[[str], StatusSource],
        market_catalog: MarketCatalog,
        logger: Any,
        status_ttl_seconds: float = 10.0,
        probe_timeout_seconds: float = 20.0,
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._accounts = accounts
        self._orders = orders
        self._box = secret_box
        self._execution_for = execution_for
        self._release_venue = release_venue
        self._supported_source = supported_exchanges
        self._supported: tuple[str, ...] | None = None
        self._public_client = public_client
        self._catalog = market_catalog
        self._log = logger
        self._status_ttl = status_ttl_seconds
        self._probe_timeout = probe_timeout_seconds
        self._user_locks: dict[int, asyncio.Lock] = {}
        self._status_cache: dict[str, tuple[float, ExchangeStatus]] = {}
        self._status_locks: dict[str, asyncio.Lock] = {}
        #: Checks run before an account is deleted (the open-orders check always runs first).
        self.deletion_guards: list[DeletionGuard] = []

    # --- catalogue ---------------------------------------------------------------------------

    def supported(self) -> tuple[str, ...]:
        """Every exchange id an account can be connected to (ccxt's list), sorted."""
        if self._supported is None:
            self._supported = tuple(sorted(set(self._supported_source())))
        return self._supported

    def check_supported(self, exchange: str) -> str:
        """``exchange`` as ccxt names it (lower case); 400 ``EXCHANGE_NOT_SUPPORTED`` otherwise."""
        name = exchange.strip().lower()
        if name != PAPER and name not in self.supported():
            raise ExchangeNotSupported(
                f"The exchange {exchange!r} is not supported; GET /exchanges lists those that are.",
                details={"exchange": exchange},
            )
        return name

    async def exchanges(self, user_id: int) -> list[ExchangeEntry]:
        """``paper`` first, then every supported exchange, with the user's accounts on each."""
        by_exchange: dict[str, list[str]] = {}
        paper_ids: list[str] = []
        for account in await self._active_accounts(user_id):
            if account.kind == PAPER:
                paper_ids.append(account.id)
            else:
                by_exchange.setdefault(account.exchange, []).append(account.id)
        entries = [ExchangeEntry(PAPER, PAPER, True, tuple(paper_ids))]
        for name in self.supported():
            ids = tuple(by_exchange.get(name, ()))
            entries.append(ExchangeEntry(name, EXCHANGE, bool(ids), ids))
        return entries

    # --- accounts ----------------------------------------------------------------------------

    async def _active_accounts(self, user_id: int) -> list[TradingAccount]:
        accounts = [account for account in await self._accounts.list(user_id) if account.active]
        # The paper account first, then exchange accounts in the order they were connected.
        return sorted(accounts, key=lambda account: account.kind != PAPER)

    async def list(self, user_id: int) -> list[ExchangeAccountView]:
        return [self.view(account) for account in await self._active_accounts(user_id)]

    async def get(self, user_id: int, account_id: str) -> ExchangeAccountView:
        return self.view(await self._accounts.resolve(user_id, account_id))

    def view(self, account: TradingAccount, *, replayed: bool = False) -> ExchangeAccountView:
        if account.kind == PAPER:
            return ExchangeAccountView(account, True, account.created_at, None, False, None, (), replayed)
        settings = account.settings
        verified = settings.get("verified")
        synced_at = _parse_time(settings.get("balances_synced_at"))
        return ExchangeAccountView(
            account=account,
            verified=verified if isinstance(verified, bool) else None,
            verified_at=_parse_time(settings.get("verified_at")),
            key_hint=settings.get("key_hint"),
            has_passphrase=bool(settings.get("has_passphrase")),
            balances_synced_at=synced_at,
            warnings=_warnings(account, verified if isinstance(verified, bool) else None, synced_at),
            replayed=replayed,
        )

    async def connect(self, user_id: int, request: ConnectRequest) -> ExchangeAccountView:
        """Check, encrypt and store an exchange account (module docstring)."""
        exchange = self.check_supported(request.exchange)
        if exchange == PAPER:
            raise Conflict(
                "Every user has one paper account already; it needs no credentials.",
                details={"exchange": PAPER, "account_id": PAPER},
            )
        lock = self._user_locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            existing = await self._accounts.list(user_id)
            replay = self._replay(existing, request, exchange)
            if replay is not None:
                return replay
            name = _choose_name(existing, request.name, exchange)
            encrypted = self._box.encrypt(request.credentials.to_json())
            now = self._clock.now()
            draft = TradingAccount(
                id=new_uuid(),
                user_id=user_id,
                kind=EXCHANGE,
                name=name,
                exchange=exchange,
                created_at=now,
                updated_at=now,
                credentials_encrypted=encrypted,
                testnet=request.testnet,
            )
            check = await self._verify(draft, request.credentials)
            account = await self._accounts.create_exchange_account(
                user_id,
                name=name,
                exchange=exchange,
                credentials_encrypted=encrypted,
                testnet=request.testnet,
                can_withdraw=check.can_withdraw,
                settings=self._settings(request, exchange, check, now),
            )
        if check.verified:
            account = await self._sync(account)
        self._log.info(
            "exchange_account_connected",
            account_id=account.id,
            user_id=user_id,
            exchange=exchange,
            testnet=request.testnet,
            verified=check.verified,
            can_withdraw=check.can_withdraw,
            unverified_reason=check.reason,
        )
        return self.view(account)

    def _settings(
        self, request: ConnectRequest, exchange: str, check: _Verification, now: datetime
    ) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "verified": check.verified,
            "verified_at": now.isoformat() if check.verified else None,
            "key_hint": key_hint(request.credentials.api_key),
            "has_passphrase": bool(request.credentials.password),
            "balances_synced_at": None,
        }
        if check.reason:
            settings["unverified_reason"] = check.reason
        if request.idempotency_key:
            settings["idempotency"] = {
                "key": request.idempotency_key,
                "fingerprint": _fingerprint(request, exchange),
                "at": now.isoformat(),
            }
        return settings

    def _replay(
        self, existing: Sequence[TradingAccount], request: ConnectRequest, exchange: str
    ) -> ExchangeAccountView | None:
        """The account an earlier request with this ``Idempotency-Key`` created, if any; 409 when
        that request had another body."""
        key = request.idempotency_key
        if not key:
            return None
        horizon = self._clock.now() - IDEMPOTENCY_WINDOW
        for account in existing:
            stamp = account.settings.get("idempotency") or {}
            at = _parse_time(stamp.get("at"))
            if not account.active or stamp.get("key") != key or at is None or at < horizon:
                continue
            same = stamp.get("fingerprint") == _fingerprint(request, exchange) and self._same_credentials(
                account, request.credentials
            )
            if not same:
                raise Conflict(
                    "This Idempotency-Key was already used with a different request body.",
                    details={"idempotency_key": key, "account_id": account.id},
                )
            return self.view(account, replayed=True)
        return None

    def _same_credentials(self, account: TradingAccount, credentials: Credentials) -> bool:
        if not account.credentials_encrypted:
            return False
        stored = json.loads(self._box.decrypt(account.credentials_encrypted))
        return bool(stored == json.loads(credentials.to_json()))

    async def _verify(self, draft: TradingAccount, credentials: Credentials) -> _Verification:
        """Ask the exchange for the balance with the new credentials (through a live execution
        client built for the account, then dropped: the stored account gets its own)."""
        secrets = credentials.values()
        try:
            execution = self._execution_for(draft)
        except CryptoOrchestratorError as error:
            raise scrubbed(error, secrets) from None
        try:
            await execution.balances()
            can_withdraw = await self._withdraw_permission(execution, secrets)
        except ExchangeAuthenticationError as error:
            reason = scrub(error.message, secrets)
            self._log.warning(
                "exchange_account_rejected", user_id=draft.user_id, exchange=draft.exchange, reason=reason
            )
            raise ExchangeAuthenticationError(
                "The exchange rejected the API credentials: check the key, the secret (and the"
                " passphrase where the exchange has one), the key's permissions and its IP whitelist.",
                details={"exchange": draft.exchange, "testnet": draft.testnet, "reason": reason},
            ) from None
        except TransientError as error:
            return _Verification(False, None, f"{error.code}: {scrub(error.message, secrets)}")
        except CryptoOrchestratorError as error:
            raise scrubbed(error, secrets) from None
        finally:
            await self._release_venue(draft.id)
        return _Verification(True, can_withdraw)

    async def _withdraw_permission(self, execution: LiveExecution, secrets: tuple[str, ...]) -> bool | None:
        try:
            return await execution.venue.has_withdraw_permission()
        except ExchangeAuthenticationError:
            raise
        except CryptoOrchestratorError as error:
            # Some keys may read balances but not their own restrictions: unknown, not refused.
            self._log.info(
                "withdraw_permission_unknown", code=error.code, reason=scrub(error.message, secrets)
            )
            return None

    async def _sync(self, account: TradingAccount) -> TradingAccount:
        """The ledger set to the exchange's balances; on failure the account stays unsynced (a
        warning says so) and the balances are synced on the next successful connection check."""
        try:
            await self._orders.sync_balances(account)
        except CryptoOrchestratorError as error:
            self._log.warning("exchange_balances_not_synced", account_id=account.id, code=error.code)
            return account
        now = self._clock.now()
        async with self._uow() as uow:
            current = await uow.accounts.get(account.id)
            settings = dict((current or account).settings)
            settings["balances_synced_at"] = now.isoformat()
            account = await uow.accounts.update(account.id, now=now, settings=settings)
            await uow.commit()
        return account

    async def delete(self, user_id: int, account_id: str) -> None:
        """Disconnect an exchange account: 409 while it has open orders (or a guard objects)."""
        async with self._uow() as uow:
            account = None if account_id == PAPER else await uow.accounts.get_for_user(account_id, user_id)
            if account_id == PAPER or (account is not None and account.kind == PAPER):
                raise Conflict(
                    "The paper account cannot be deleted; reset it with POST /account/reset.",
                    details={"account_id": account_id},
                )
            if account is None or not account.active:
                raise NotFound("Account not found.", details={"account_id": account_id})
            open_orders = await uow.orders.open_orders(account_id=account.id)
        reasons = [f"{len(open_orders)} open order(s): cancel them first"] if open_orders else []
        for guard in self.deletion_guards:
            reason = await guard(account)
            if reason:
                reasons.append(reason)
        if reasons:
            raise Conflict(
                "The account cannot be deleted: " + "; ".join(reasons) + ".",
                details={"account_id": account.id, "reasons": reasons, "open_orders": len(open_orders)},
            )
        now = self._clock.now()
        settings = {
            key: value for key, value in account.settings.items() if key not in ("idempotency", "key_hint")
        }
        settings.update(deleted_at=now.isoformat(), original_name=account.name)
        suffix = f" (deleted {account.id})"
        async with self._uow() as uow:
            # Kept for its history (orders, fills, P&L); the credentials go and the name is freed.
            await uow.accounts.update(
                account.id,
                now=now,
                active=False,
                credentials_encrypted=None,
                name=account.name[: MAX_NAME_LENGTH - len(suffix)] + suffix,
                settings=settings,
            )
            await uow.commit()
        await self._release_venue(account.id)
        self._log.info("exchange_account_deleted", account_id=account.id, user_id=user_id)

    # --- status ------------------------------------------------------------------------------

    async def status(self, exchange: str) -> ExchangeStatus:
        """Whether ``exchange`` answers (public endpoints, no credentials), cached a few seconds."""
        name = self.check_supported(exchange)
        if name == PAPER:
            markets = {entry.symbol for entry in await self._catalog.markets()}
            return ExchangeStatus(PAPER, True, "ok", self._clock.now(), 0.0, self._clock.now(), len(markets))
        lock = self._status_locks.setdefault(name, asyncio.Lock())
        async with lock:
            cached = self._status_cache.get(name)
            if cached is not None and time.monotonic() - cached[0] < self._status_ttl:
                return cached[1]
            result = await self._probe(name)
            self._status_cache[name] = (time.monotonic(), result)
        return result

    async def _probe(self, name: str) -> ExchangeStatus:
        checked = self._clock.now()
        client = self._public_client(name)
        try:
            async with asyncio.timeout(self._probe_timeout):
                started = time.perf_counter()
                markets = await client.load_markets()
                latency = (time.perf_counter() - started) * 1000
                server_time, ticker_latency = await self._server_time(client, markets)
        except TimeoutError:
            return ExchangeStatus(name, False, "unreachable", checked, error_code="EXCHANGE_TIMEOUT",
                                  error_message="The exchange did not answer in time.")  # fmt: skip
        except TransientError as error:
            return ExchangeStatus(name, False, "unreachable", checked, error_code=error.code,
                                  error_message=error.message)  # fmt: skip
        except CryptoOrchestratorError as error:
            # It answered, with an error: reachable but not healthy.
            return ExchangeStatus(name, True, "error", checked, error_code=error.code,
                                  error_message=error.message)  # fmt: skip
        finally:
            await _close_quietly(client)
        return ExchangeStatus(
            exchange=name,
            reachable=True,
            status="ok",
            checked_at=checked,
            latency_ms=round(ticker_latency if ticker_latency is not None else latency, 3),
            server_time=server_time,
            markets=len(markets),
        )

    async def _server_time(
        self, client: StatusSource, markets: Mapping[str, MarketInfo]
    ) -> tuple[datetime | None, float | None]:
        """The venue's time, from a ticker's timestamp (one light request, also timed)."""
        symbol = next((s for s in _PREFERRED_PROBE_SYMBOLS if s in markets), None)
        if symbol is None:
            symbol = next((s for s, market in sorted(markets.items()) if market.active), None)
        if symbol is None:
            return None, None
        started = time.perf_counter()
        try:
            ticker = await client.fetch_ticker(symbol)
        except CryptoOrchestratorError:
            return None, None
        latency = (time.perf_counter() - started) * 1000
        if ticker.timestamp is None:
            return None, latency
        return datetime.fromtimestamp(ticker.timestamp / 1000, tz=UTC), latency


def _fingerprint(request: ConnectRequest, exchange: str) -> str:
    """What must match for an ``Idempotency-Key`` replay, credentials aside (those are compared
    with the stored ciphertext decrypted, so no derivative of a secret is stored)."""
    body = {"exchange": exchange, "name": request.name, "testnet": request.testnet}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _choose_name(existing: Sequence[TradingAccount], requested: str | None, exchange: str) -> str:
    taken = {account.name.casefold() for account in existing}
    if requested:
        if requested.casefold() in taken or requested.casefold() == PAPER:
            raise Conflict(f"An account named {requested!r} already exists.", details={"name": requested})
        return requested
    name, number = exchange, 1
    while name.casefold() in taken:
        number += 1
        name = f"{exchange}-{number}"
    return name


def _warnings(
    account: TradingAccount, verified: bool | None, synced_at: datetime | None
) -> tuple[AccountWarning, ...]:
    """What the user should know about an account; derived from its state, so a replayed or
    listed account shows the same warnings as the answer that connected it."""
    found: list[AccountWarning] = []
    if verified is False:
        found.append(
            AccountWarning(
                "EXCHANGE_UNREACHABLE",
                "The exchange could not be reached: the credentials are not verified and the"
                " balances not synced yet.",
            )
        )
    if account.can_withdraw:
        found.append(
            AccountWarning(
                "WITHDRAW_ENABLED", "This key can withdraw funds: create a trade-only key and connect that."
            )
        )
    elif verified and account.can_withdraw is None:
        found.append(
            AccountWarning(
                "WITHDRAW_PERMISSION_UNKNOWN",
                "The exchange does not say whether this key can withdraw funds: make sure it is trade-only.",
            )
        )
    if verified and synced_at is None:
        found.append(
            AccountWarning("BALANCES_NOT_SYNCED", "The balances could not be read from the exchange yet.")
        )
    return tuple(found)


async def _close_quietly(client: StatusSource) -> None:
    # Closing a probe client must never hide the probe's answer.
    with contextlib.suppress(Exception):
        await client.close()
