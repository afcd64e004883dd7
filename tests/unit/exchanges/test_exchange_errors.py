"""ccxt exceptions -> the core error tree."""

from __future__ import annotations

import socket

import ccxt
import pytest

from cryptoorchestrator.core.errors import (
    CryptoOrchestratorError,
    ExchangeAuthenticationError,
    ExchangeError,
    ExchangeNotSupported,
    ExchangeRateLimited,
    ExchangeTimeout,
    ExchangeUnavailable,
    InsufficientBalance,
    InvalidSymbol,
    OrderNotFoundOnExchange,
    OrderRejected,
)
from cryptoorchestrator.exchanges.errors import (
    RESPONSE_HEADERS_ATTRIBUTE,
    RESPONSE_STATUS_ATTRIBUTE,
    redact,
    request_never_sent,
    retry_after_seconds,
    translate_ccxt_error,
)


def translate(error: ccxt.BaseError, **kwargs: object) -> CryptoOrchestratorError:
    return translate_ccxt_error(error, exchange_id="binance", operation="fetch_ticker", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("vendor", "expected"),
    [
        (ccxt.RateLimitExceeded, ExchangeRateLimited),
        (ccxt.DDoSProtection, ExchangeRateLimited),
        (ccxt.RequestTimeout, ExchangeTimeout),
        (ccxt.NetworkError, ExchangeUnavailable),
        (ccxt.ExchangeNotAvailable, ExchangeUnavailable),
        (ccxt.OnMaintenance, ExchangeUnavailable),
        (ccxt.InvalidNonce, ExchangeUnavailable),
        (ccxt.BadResponse, ExchangeUnavailable),
        (ccxt.NullResponse, ExchangeUnavailable),
        (ccxt.OperationFailed, ExchangeUnavailable),
        (ccxt.AuthenticationError, ExchangeAuthenticationError),
        (ccxt.PermissionDenied, ExchangeAuthenticationError),
        (ccxt.AccountSuspended, ExchangeAuthenticationError),
        (ccxt.InsufficientFunds, InsufficientBalance),
        (ccxt.InvalidOrder, OrderRejected),
        (ccxt.OrderNotFound, OrderNotFoundOnExchange),
        (ccxt.BadSymbol, InvalidSymbol),
        (ccxt.NotSupported, ExchangeNotSupported),
        (ccxt.BadRequest, ExchangeError),
        (ccxt.ExchangeError, ExchangeError),
        (ccxt.BaseError, ExchangeError),
    ],
)
def test_every_ccxt_class_maps_to_its_core_error(vendor: type[ccxt.BaseError], expected: type) -> None:
    error = translate(vendor("binance something went wrong"))
    assert type(error) is expected
    assert error.details["exchange"] == "binance"
    assert error.details["operation"] == "fetch_ticker"
    assert error.details["vendor_error"] == vendor.__name__


def test_retryability_follows_the_core_tree() -> None:
    assert translate(ccxt.ExchangeNotAvailable("x")).retryable
    assert translate(ccxt.RateLimitExceeded("x")).retryable
    assert not translate(ccxt.InsufficientFunds("x")).retryable
    assert translate(ccxt.AuthenticationError("x")).needs_operator


def test_rate_limit_reads_retry_after_from_headers_the_guard_attached() -> None:
    vendor = ccxt.DDoSProtection("binance 429 Too Many Requests {}")
    setattr(vendor, RESPONSE_HEADERS_ATTRIBUTE, {"retry-after": "12"})
    setattr(vendor, RESPONSE_STATUS_ATTRIBUTE, 429)
    error = translate(vendor)
    assert isinstance(error, ExchangeRateLimited)
    assert error.retry_after == 12.0
    assert error.details["http_status"] == 429


def test_rate_limit_reads_retry_after_from_explicit_headers() -> None:
    error = translate(ccxt.RateLimitExceeded("slow down"), headers={"Retry-After": "3.5"})
    assert isinstance(error, ExchangeRateLimited)
    assert error.retry_after == 3.5


def test_binance_ban_message_gives_the_wait_when_no_header() -> None:
    vendor = ccxt.DDoSProtection(
        'binance 418 {"msg":"Way too many requests; IP banned until 1700000090000."}'
    )
    error = translate(vendor, now=1_700_000_000.0)
    assert isinstance(error, ExchangeRateLimited)
    assert error.retry_after == pytest.approx(90.0)
    assert error.details["http_status"] == 418


def test_rate_limit_without_any_hint_has_no_retry_after() -> None:
    error = translate(ccxt.RateLimitExceeded("slow down"))
    assert isinstance(error, ExchangeRateLimited)
    assert error.retry_after is None


def test_retry_after_accepts_http_dates() -> None:
    headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    assert retry_after_seconds(headers, now=1445412460.0) == pytest.approx(20.0)
    assert retry_after_seconds(headers, now=1445412500.0) == 0.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds(None) is None


def test_duplicate_client_order_id_is_an_order_rejection_with_a_reason() -> None:
    error = translate_ccxt_error(
        ccxt.InvalidOrder('binance {"code":-2010,"msg":"Duplicate order sent."}'),
        exchange_id="binance",
        operation="create_order",
        idempotent=False,
    )
    assert isinstance(error, OrderRejected)
    assert error.details["reason"] == "duplicate_client_order_id"


def test_bad_request_on_order_submission_is_an_order_rejection() -> None:
    vendor = ccxt.BadRequest('binance {"code":-1013,"msg":"Filter failure: NOTIONAL"}')
    on_order = translate_ccxt_error(vendor, exchange_id="binance", operation="create_order", idempotent=False)
    on_read = translate_ccxt_error(vendor, exchange_id="binance", operation="fetch_ticker")
    assert isinstance(on_order, OrderRejected)
    assert type(on_read) is ExchangeError


@pytest.mark.parametrize(
    "vendor",
    [
        ccxt.RequestTimeout("timed out"),
        ccxt.ExchangeNotAvailable(
            "binance POST https://api.binance.com/api/v3/order 503 Service Unavailable"
        ),
        ccxt.BadResponse("garbled"),
        ccxt.OperationFailed('binance {"code":-1000,"msg":"An unknown error occured"}'),
    ],
)
def test_state_changing_calls_report_an_unknown_outcome(vendor: ccxt.BaseError) -> None:
    error = translate_ccxt_error(vendor, exchange_id="binance", operation="create_order", idempotent=False)
    assert isinstance(error, ExchangeTimeout)
    assert error.details["outcome_unknown"] is True


@pytest.mark.parametrize(
    ("vendor", "expected"),
    [
        (ccxt.RateLimitExceeded("429"), ExchangeRateLimited),
        (ccxt.OnMaintenance("maintenance"), ExchangeUnavailable),
        (ccxt.InvalidNonce("timestamp outside recvWindow"), ExchangeUnavailable),
        (ccxt.InsufficientFunds("no money"), InsufficientBalance),
    ],
)
def test_state_changing_calls_keep_definite_refusals(vendor: ccxt.BaseError, expected: type) -> None:
    error = translate_ccxt_error(vendor, exchange_id="binance", operation="create_order", idempotent=False)
    assert type(error) is expected
    assert "outcome_unknown" not in error.details


def test_a_refused_connection_proves_the_order_was_not_sent() -> None:
    vendor = ccxt.ExchangeNotAvailable("binance POST https://api.binance.com/api/v3/order")
    vendor.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert request_never_sent(vendor)
    error = translate_ccxt_error(vendor, exchange_id="binance", operation="create_order", idempotent=False)
    assert type(error) is ExchangeUnavailable


def test_dns_failure_proves_the_request_was_not_sent_but_a_timeout_does_not() -> None:
    dns = ccxt.ExchangeNotAvailable("dns")
    dns.__cause__ = socket.gaierror(-2, "Name or service not known")
    timeout = ccxt.RequestTimeout("slow")
    timeout.__cause__ = TimeoutError()
    assert request_never_sent(dns)
    assert not request_never_sent(timeout)


def test_messages_never_carry_keys_secrets_or_signatures() -> None:
    key, secret = "AbCdEfGhIjKlMnOpQrStUvWxYz012345", "s3cr3t-s3cr3t-s3cr3t"
    vendor = ccxt.AuthenticationError(
        f"binance GET https://api.binance.com/api/v3/account?apiKey={key}&timestamp=1&signature=deadbeef00 "
        f"secret={secret}"
    )
    error = translate(vendor, secrets=[key, secret, None])
    for text in (error.message, str(error), repr(error.details)):
        assert key not in text
        assert secret not in text
        assert "deadbeef00" not in text
    assert "signature=***" in error.message


def test_redact_leaves_short_strings_alone() -> None:
    assert redact("a b c", ["b"]) == "a b c"
    assert redact("token=abcdefgh", ["abcdefgh"]) == "token=***"


def test_context_is_copied_into_details() -> None:
    error = translate(
        ccxt.BadSymbol("binance does not have market symbol FOO/BAR"), context={"symbol": "FOO/BAR"}
    )
    assert isinstance(error, InvalidSymbol)
    assert error.details["symbol"] == "FOO/BAR"
