"""Exchange accounts through the API against the fake Binance (ccxt's real code path): connecting
checks the credentials first (refused: nothing stored; unreachable: stored unverified), syncs the
ledger, warns about withdraw-enabled keys; credentials are encrypted at rest and never appear in
a response, an error or a log line; deletion is refused while orders are open; the exchange
catalogue and status; validation and ownership."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from cryptoorchestrator.bootstrap import Container
from cryptoorchestrator.core.errors import ExchangeAuthenticationError, ExchangeError
from cryptoorchestrator.exchanges.client import CcxtExchangeClient
from cryptoorchestrator.exchanges.ratelimit import RateBudgetRegistry, RetryPolicy
from cryptoorchestrator.testing.api import ApiUser, assert_error, register_user
from cryptoorchestrator.testing.fake_exchange import FakeBinance, FaultKind
from cryptoorchestrator.testing.fake_exchange_data import DEFAULT_BALANCES, DEFAULT_MARKETS
from cryptoorchestrator.testing.fake_exchange_venue import SimulatedBinanceSpot
from tests.conftest import client_for

pytestmark = pytest.mark.integration

API_KEY = "fakeKEYabcd0123456789wxyz"
SECRET = "fake-SECRET-do-not-leak-7f3a9c"
ACCOUNTS = "/api/v1/exchanges/accounts"
MISSING = "00000000-0000-0000-0000-000000000000"


@dataclass
class FakeExchanges:
    """Builds ccxt clients over fake Binance instances sharing one venue; faults in ``faults``
    are injected into every instance built afterwards."""

    venue: SimulatedBinanceSpot
    registry: RateBudgetRegistry = field(default_factory=RateBudgetRegistry)
    faults: list[tuple[FaultKind, dict[str, Any]]] = field(default_factory=list)
    built: list[FakeBinance] = field(default_factory=list)

    def _client(self, config: dict[str, Any] | None = None) -> CcxtExchangeClient:
        fake = FakeBinance(config, venue=self.venue)
        for kind, options in self.faults:
            fake.inject(kind, **options)
        self.built.append(fake)
        return CcxtExchangeClient(fake, budget_registry=self.registry, retry_policy=RetryPolicy.no_retries())

    def venue_factory(self, account: Any, credentials: dict[str, str]) -> CcxtExchangeClient:
        return self._client({"apiKey": credentials["api_key"], "secret": credentials["secret"]})

    def public_factory(self, name: str) -> CcxtExchangeClient:
        return self._client()

    async def close(self) -> None:
        for fake in self.built:
            await fake.close()


@dataclass
class Setup:
    http: httpx.AsyncClient
    container: Container
    exchanges: FakeExchanges
    alice: ApiUser

    @property
    def venue(self) -> SimulatedBinanceSpot:
        return self.exchanges.venue

    async def connect(self, *, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
        payload = {"exchange": "binance", "api_key": API_KEY, "secret": SECRET, **body}
        return await self.http.post(ACCOUNTS, headers=headers or self.alice.headers, json=payload)


@pytest.fixture
async def make_setup(app_factory: Any, clock: Any) -> Any:
    """Builds an app whose exchange accounts and exchange status go to a fake Binance venue."""
    opened: list[Setup] = []

    async def build(*, venue_factory: Callable[..., Any] | None = None, **options: Any) -> Setup:
        overrides = {key: options.pop(key) for key in list(options) if key in ("log_level",)}
        venue = SimulatedBinanceSpot(clock=clock, api_key=API_KEY, secret=SECRET, **options)
        exchanges = FakeExchanges(venue)
        app, container = await app_factory(
            venue_factory=venue_factory or exchanges.venue_factory,
            exchange_factory=exchanges.public_factory,
            paper_poll_seconds=0,
            **overrides,
        )
        http = client_for(app)
        await http.__aenter__()
        made = Setup(http, container, exchanges, await register_user(http, "alice"))
        opened.append(made)
        return made

    yield build
    for made in opened:
        await made.http.__aexit__(None, None, None)
        await made.exchanges.close()


@pytest.fixture
async def setup(make_setup: Any) -> Setup:
    result: Setup = await make_setup()
    return result


def assert_no_credentials(text: str, *secrets: str) -> None:
    for secret in (SECRET, API_KEY, *secrets):
        assert secret not in text, "a credential leaked"
    lowered = text.lower()
    for name in ("credentials_encrypted", '"secret"', '"api_key"', '"password"', '"passphrase"'):
        assert name not in lowered, f"{name} is in a response"


async def balances_of(setup: Setup, account_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = await setup.http.get(
        f"/api/v1/balance?account_id={account_id}", headers=headers or setup.alice.headers
    )
    assert response.status_code == 200, response.text
    return {b["asset"]: Decimal(b["total"]) for b in response.json()["balances"]}


# --- connecting -------------------------------------------------------------------------------


async def test_connect_checks_the_key_syncs_balances_and_never_returns_credentials(setup: Setup) -> None:
    response = await setup.connect(name="main")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["exchange"] == "binance" and body["name"] == "main" and body["kind"] == "exchange"
    assert body["mode"] == "live" and body["status"] == "active" and body["testnet"] is False
    assert body["verified"] is True and body["verified_at"] is not None
    assert body["can_withdraw"] is False and body["warnings"] == []
    assert body["key_hint"] == f"{API_KEY[:4]}…{API_KEY[-4:]}"
    assert body["balances_synced_at"] is not None and body["has_passphrase"] is False
    assert_no_credentials(response.text)
    # The ledger holds the venue's balances.
    assert await balances_of(setup, body["id"]) == {a: Decimal(v) for a, v in DEFAULT_BALANCES.items()}
    # Listed after the paper account, with no credential field.
    listed = await setup.http.get(ACCOUNTS, headers=setup.alice.headers)
    assert listed.status_code == 200
    page = listed.json()
    assert [(a["kind"], a["name"]) for a in page["items"]] == [("paper", "paper"), ("exchange", "main")]
    assert page["total"] == 2 and page["limit"] == 50 and page["offset"] == 0
    assert_no_credentials(listed.text)
    one = await setup.http.get(f"{ACCOUNTS}/{body['id']}", headers=setup.alice.headers)
    assert one.json() == {**body, "updated_at": one.json()["updated_at"]}
    # The venue saw the balance request signed with the key.
    assert any(r.authenticated for r in setup.exchanges.built[0].requests_to("/api/v3/account"))


async def test_credentials_are_encrypted_at_rest(setup: Setup) -> None:
    body = (await setup.connect(passphrase="my-passphrase-123")).json()
    async with setup.container.uow_factory() as uow:
        stored = await uow.accounts.get(body["id"])
    assert stored is not None and stored.credentials_encrypted
    assert SECRET not in stored.credentials_encrypted and API_KEY not in stored.credentials_encrypted
    assert json.loads(setup.container.secret_box.decrypt(stored.credentials_encrypted)) == {
        "api_key": API_KEY,
        "secret": SECRET,
        "password": "my-passphrase-123",
    }
    assert SECRET not in json.dumps(stored.settings) and API_KEY not in json.dumps(stored.settings)
    url = setup.container.settings.resolved_database_url
    if url.startswith("sqlite"):
        database = Path(url.split("///", 1)[1])
        for path in database.parent.glob(database.name + "*"):  # the file, its WAL and journal
            raw = path.read_bytes()
            assert SECRET.encode() not in raw and b"my-passphrase-123" not in raw, path


async def test_a_refused_key_answers_400_and_stores_nothing(setup: Setup) -> None:
    wrong = "wrong-secret-0123456789abcdef"
    response = await setup.connect(secret=wrong)
    error = assert_error(response, 400, "EXCHANGE_AUTH_FAILED")
    assert error["details"]["exchange"] == "binance"
    assert_no_credentials(response.text, wrong)
    wrong_key = await setup.connect(api_key="someone-elses-key-0123456789")
    assert_error(wrong_key, 400, "EXCHANGE_AUTH_FAILED")
    assert "someone-elses-key-0123456789" not in wrong_key.text
    listed = (await setup.http.get(ACCOUNTS, headers=setup.alice.headers)).json()
    assert [a["kind"] for a in listed["items"]] == ["paper"]
    async with setup.container.uow_factory() as uow:
        _, total = await uow.accounts.list_for_user(setup.alice.id, limit=10, offset=0)
    assert total == 1


async def test_an_unreachable_exchange_stores_the_account_unverified(setup: Setup) -> None:
    setup.exchanges.faults.append((FaultKind.CONNECTION_REFUSED, {"times": None}))
    response = await setup.connect()
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["verified"] is False and body["verified_at"] is None and body["can_withdraw"] is None
    assert [w["code"] for w in body["warnings"]] == ["EXCHANGE_UNREACHABLE"]
    assert body["balances_synced_at"] is None
    assert await balances_of(setup, body["id"]) == {}
    assert_no_credentials(response.text)


async def test_a_key_that_can_withdraw_gets_a_warning(make_setup: Any) -> None:
    setup = await make_setup(withdrawals_enabled=True)
    response = await setup.connect()
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["verified"] is True and body["can_withdraw"] is True
    (warning,) = body["warnings"]
    assert warning["code"] == "WITHDRAW_ENABLED"
    assert "can withdraw funds" in warning["message"] and "trade-only key" in warning["message"]


async def test_seed_aliases_are_accepted(setup: Setup) -> None:
    response = await setup.http.post(
        ACCOUNTS,
        headers=setup.alice.headers,
        json={"exchange_name": "Binance", "apiKey": API_KEY, "api_secret": SECRET, "label": "aliased"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "aliased" and response.json()["exchange"] == "binance"


async def test_names_are_unique_and_idempotency_keys_replay(setup: Setup) -> None:
    first = (await setup.connect()).json()
    second = (await setup.connect()).json()
    assert (first["name"], second["name"]) == ("binance", "binance-2")
    assert_error(await setup.connect(name="binance"), 409, "CONFLICT")
    assert_error(await setup.connect(name="paper"), 409, "CONFLICT")
    headers = {**setup.alice.headers, "Idempotency-Key": "connect-1"}
    created = await setup.connect(headers=headers, name="keyed")
    assert created.status_code == 201 and "idempotent-replayed" not in created.headers
    replayed = await setup.connect(headers=headers, name="keyed")
    assert replayed.status_code == 201
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json()["id"] == created.json()["id"]
    other_secret = await setup.connect(headers=headers, name="keyed", secret="another-secret-0123456789")
    conflict = assert_error(other_secret, 409, "CONFLICT")
    assert "another-secret" not in other_secret.text and conflict["details"]["idempotency_key"] == "connect-1"
    assert_error(await setup.connect(headers=headers, name="renamed"), 409, "CONFLICT")
    listed = (await setup.http.get(ACCOUNTS, headers=setup.alice.headers)).json()
    names = [a["name"] for a in listed["items"]]
    assert names[0] == "paper" and sorted(names[1:]) == ["binance", "binance-2", "keyed"]


async def test_paper_cannot_be_connected_or_deleted(setup: Setup) -> None:
    assert_error(await setup.connect(exchange="paper"), 409, "CONFLICT")
    assert_error(await setup.http.delete(f"{ACCOUNTS}/paper", headers=setup.alice.headers), 409, "CONFLICT")
    paper = (await setup.http.get(ACCOUNTS, headers=setup.alice.headers)).json()["items"][0]
    assert paper["kind"] == "paper" and paper["verified"] is True and paper["key_hint"] is None
    deleted = await setup.http.delete(f"{ACCOUNTS}/{paper['id']}", headers=setup.alice.headers)
    assert_error(deleted, 409, "CONFLICT")


async def test_an_unsupported_exchange_is_refused(setup: Setup) -> None:
    error = assert_error(await setup.connect(exchange="nosuchexchange"), 400, "EXCHANGE_NOT_SUPPORTED")
    assert error["details"]["exchange"] == "nosuchexchange"


@pytest.mark.parametrize(
    "body",
    [
        {"exchange": "binance", "api_key": API_KEY},  # no secret
        {"exchange": "binance", "secret": SECRET},  # no key
        {"exchange": "binance", "api_key": "   ", "secret": SECRET},
        {"exchange": "bin ance!", "api_key": API_KEY, "secret": SECRET},
        {"exchange": "binance", "api_key": API_KEY, "secret": SECRET, "unknown": 1},
        {"exchange": "binance", "api_key": API_KEY, "secret": SECRET + "x" * 9000},
        {"exchange": "binance", "api_key": API_KEY, "secret": SECRET, "name": ""},
        {"exchange": "binance", "api_key": API_KEY, "secret": SECRET, "testnet": "maybe"},
    ],
)
async def test_validation_errors_answer_422_without_echoing_secrets(
    setup: Setup, body: dict[str, Any]
) -> None:
    response = await setup.http.post(ACCOUNTS, headers=setup.alice.headers, json=body)
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error["details"]["errors"]
    assert SECRET not in response.text and API_KEY not in response.text


async def test_errors_from_the_exchange_never_carry_credentials(make_setup: Any) -> None:
    class Leaky:
        """A venue whose errors quote the credentials (the adapter redacts; this is the backstop)."""

        def __init__(self, credentials: dict[str, str]) -> None:
            self.credentials = credentials

        async def fetch_balance(self) -> Any:
            if self.credentials["secret"] == SECRET:
                raise ExchangeError(f"venue said: bad request signed with {SECRET}")
            raise ExchangeAuthenticationError(f"key {self.credentials['api_key']} refused", details={
                "echo": [self.credentials["secret"]],
            })  # fmt: skip

        async def close(self) -> None:
            return None

    setup = await make_setup(venue_factory=lambda account, credentials: Leaky(credentials))
    failed = await setup.connect()
    assert_error(failed, 502, "EXCHANGE_ERROR")
    assert_no_credentials(failed.text)
    refused = await setup.connect(secret="other-secret-abcdef123")
    assert_error(refused, 400, "EXCHANGE_AUTH_FAILED")
    assert_no_credentials(refused.text, "other-secret-abcdef123")


async def test_log_lines_never_carry_credentials(make_setup: Any) -> None:
    setup = await make_setup(log_level="INFO")
    root = logging.getLogger()
    platform = next(h for h in root.handlers if getattr(h, "_co_handler", False))
    buffer = io.StringIO()
    capture = logging.StreamHandler(buffer)
    capture.setFormatter(platform.formatter)
    root.addHandler(capture)
    try:
        assert (await setup.connect(passphrase="pass-phrase-4567")).status_code == 201
        assert (await setup.connect(secret="wrong-secret-0123456789")).status_code == 400
        from cryptoorchestrator.config.logging import get_logger

        get_logger("test").info(
            "direct", passphrase="pass-phrase-4567", api_secret=SECRET, credentials=SECRET
        )
    finally:
        root.removeHandler(capture)
    text = buffer.getvalue()
    events = [json.loads(line)["event"] for line in text.splitlines() if line.startswith("{")]
    assert "exchange_account_connected" in events and "exchange_account_rejected" in events
    assert "direct" in events
    for secret in (SECRET, API_KEY, "pass-phrase-4567", "wrong-secret-0123456789"):
        assert secret not in text, f"{secret} was logged"


# --- deleting ---------------------------------------------------------------------------------


async def test_delete_is_refused_while_orders_are_open(setup: Setup) -> None:
    account = (await setup.connect(name="main")).json()
    order = await setup.http.post(
        "/api/v1/orders",
        headers=setup.alice.headers,
        json={
            "account_id": account["id"],
            "symbol": "BTC/USDT",
            "side": "buy",
            "type": "limit",
            "quantity": "0.01",
            "price": "1000",
        },
    )
    assert order.status_code == 201 and order.json()["status"] == "new", order.text
    refused = await setup.http.delete(f"{ACCOUNTS}/{account['id']}", headers=setup.alice.headers)
    error = assert_error(refused, 409, "CONFLICT")
    assert error["details"]["open_orders"] == 1
    canceled = await setup.http.delete(f"/api/v1/orders/{order.json()['id']}", headers=setup.alice.headers)
    assert canceled.json()["status"] == "canceled"
    deleted = await setup.http.delete(f"{ACCOUNTS}/{account['id']}", headers=setup.alice.headers)
    assert deleted.status_code == 204, deleted.text
    listed = (await setup.http.get(ACCOUNTS, headers=setup.alice.headers)).json()
    assert [a["kind"] for a in listed["items"]] == ["paper"]
    again = await setup.http.delete(f"{ACCOUNTS}/{account['id']}", headers=setup.alice.headers)
    assert_error(again, 404, "NOT_FOUND")
    gone = await setup.http.get(f"/api/v1/balance?account_id={account['id']}", headers=setup.alice.headers)
    assert_error(gone, 404, "NOT_FOUND")
    # The history stays; the credentials do not; the name is free again.
    async with setup.container.uow_factory() as uow:
        stored = await uow.accounts.get(account["id"])
    assert stored is not None and stored.active is False and stored.credentials_encrypted is None
    orders = (await setup.http.get("/api/v1/orders", headers=setup.alice.headers)).json()
    assert orders["total"] == 1
    assert (await setup.connect(name="main")).status_code == 201


async def test_deletion_guards_can_refuse(setup: Setup) -> None:
    account = (await setup.connect()).json()

    async def used_by_a_bot(candidate: Any) -> str | None:
        return "used by bot 'grid-1'" if candidate.id == account["id"] else None

    setup.container.exchange_accounts.deletion_guards.append(used_by_a_bot)
    refused = await setup.http.delete(f"{ACCOUNTS}/{account['id']}", headers=setup.alice.headers)
    error = assert_error(refused, 409, "CONFLICT")
    assert error["details"]["reasons"] == ["used by bot 'grid-1'"]
    setup.container.exchange_accounts.deletion_guards.clear()
    deleted = await setup.http.delete(f"{ACCOUNTS}/{account['id']}", headers=setup.alice.headers)
    assert deleted.status_code == 204


# --- catalogue and status -------------------------------------------------------------------


async def test_exchanges_lists_supported_and_connected(setup: Setup) -> None:
    account = (await setup.connect()).json()
    response = await setup.http.get("/api/v1/exchanges", headers=setup.alice.headers)
    assert response.status_code == 200
    page = response.json()
    assert page["items"][0]["id"] == "paper" and page["items"][0]["connected"] is True
    assert len(page["items"][0]["account_ids"]) == 1
    assert page["total"] > 50 and page["limit"] == 500
    by_id = {item["id"]: item for item in page["items"]}
    assert by_id["binance"] == {
        "id": "binance",
        "name": "binance",
        "kind": "exchange",
        "connected": True,
        "account_ids": [account["id"]],
    }
    assert by_id["kraken"]["connected"] is False and by_id["kraken"]["account_ids"] == []
    connected = (await setup.http.get("/api/v1/exchanges?connected=true", headers=setup.alice.headers)).json()
    assert [item["id"] for item in connected["items"]] == ["paper", "binance"]
    bob = await register_user(setup.http, "bob")
    theirs = (await setup.http.get("/api/v1/exchanges?connected=true", headers=bob.headers)).json()
    assert [item["id"] for item in theirs["items"]] == ["paper"]
    assert_error(await setup.http.get("/api/v1/exchanges"), 401, "UNAUTHORIZED")


async def test_exchange_status(setup: Setup) -> None:
    response = await setup.http.get("/api/v1/exchanges/binance/status", headers=setup.alice.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["exchange"] == "binance" and body["reachable"] is True and body["status"] == "ok"
    assert body["markets"] == len(DEFAULT_MARKETS) and body["error"] is None
    assert body["latency_ms"] >= 0
    assert body["server_time"].endswith("Z")
    paper = (await setup.http.get("/api/v1/exchanges/paper/status", headers=setup.alice.headers)).json()
    assert paper["reachable"] is True and paper["exchange"] == "paper"
    unknown = await setup.http.get("/api/v1/exchanges/nosuchexchange/status", headers=setup.alice.headers)
    assert_error(unknown, 404, "EXCHANGE_NOT_SUPPORTED")


async def test_exchange_status_when_unreachable(setup: Setup) -> None:
    setup.exchanges.faults.append((FaultKind.CONNECTION_REFUSED, {"times": None}))
    response = await setup.http.get("/api/v1/exchanges/binance/status", headers=setup.alice.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reachable"] is False and body["status"] == "unreachable"
    assert body["error"]["code"] == "EXCHANGE_UNAVAILABLE" and body["markets"] is None


# --- ownership --------------------------------------------------------------------------------


async def test_another_users_account_is_not_found(setup: Setup) -> None:
    from cryptoorchestrator.testing.ownership import OwnedRoute, assert_owner_only

    account = (await setup.connect()).json()
    bob = await register_user(setup.http, "bob")
    await assert_owner_only(
        setup.http,
        owner_headers=setup.alice.headers,
        intruder_headers=bob.headers,
        object_id=account["id"],
        missing_id=MISSING,
        routes=[
            OwnedRoute("GET", f"{ACCOUNTS}/{{id}}"),
            OwnedRoute("GET", "/api/v1/balance?account_id={id}"),
            OwnedRoute("DELETE", f"{ACCOUNTS}/{{id}}"),
        ],
        check=OwnedRoute("GET", f"{ACCOUNTS}/{{id}}"),
    )
    for account_id in (account["id"], MISSING):
        order = await setup.http.post(
            "/api/v1/orders",
            headers=bob.headers,
            json={"account_id": account_id, "symbol": "BTC/USDT", "side": "buy", "quantity": "0.01"},
        )
        assert_error(order, 404, "NOT_FOUND")
    assert [a["kind"] for a in (await setup.http.get(ACCOUNTS, headers=bob.headers)).json()["items"]] == [
        "paper"
    ]
    assert await balances_of(setup, account["id"]) == {a: Decimal(v) for a, v in DEFAULT_BALANCES.items()}
