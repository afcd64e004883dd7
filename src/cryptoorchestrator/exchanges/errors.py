"""Translate ccxt exceptions into the core error tree, at the adapter boundary.

Rules (convention 5 of the architecture guide): nothing above ``exchanges/`` ever sees a ccxt
class; every translated error says whether it is retryable (``ExchangeUnavailable``,
``ExchangeRateLimited``), the user's fault (``InsufficientBalance``, ``OrderRejected``,
``InvalidSymbol``), or an operator's (``ExchangeAuthenticationError``).

One rule is specific to calls that change state at the venue (order submission): when the
request may have reached the venue but no trustworthy answer came back (a timeout, a 5xx, a
garbled body, a generic server failure), the outcome is unknown and the error is an
``ExchangeTimeout`` with ``details["outcome_unknown"] = True``, whatever ccxt called it. Binance
documents exactly this for 5xx answers ("the execution status is UNKNOWN and could have been a
success"). Only failures that prove the request never arrived (DNS failure, connection refused)
or that the venue refused it (429/418, maintenance, a bad timestamp) stay plainly retryable.

``install_response_guard`` prepares a ccxt instance for this: it attaches the HTTP status and
headers to every exception ccxt raises for a response (so ``Retry-After`` is known), and turns
a truncated JSON body into ``ccxt.BadResponse`` instead of letting ccxt parse it into Nones.

Messages never carry credentials: API keys, secrets and request signatures are redacted, and
translated errors are raised ``from None`` so the vendor exception (whose text may include a
signed URL) does not ride along in tracebacks.
"""

from __future__ import annotations

import email.utils
import math
import re
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC
from typing import Any, Final

import ccxt

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

#: Attribute the client's response guard sets on a ccxt exception: the HTTP response headers.
RESPONSE_HEADERS_ATTRIBUTE: Final = "co_response_headers"
#: Attribute the client's response guard sets on a ccxt exception: the HTTP status code.
RESPONSE_STATUS_ATTRIBUTE: Final = "co_response_status"

#: Operations whose failure with a 4xx "bad request" means the order itself was refused.
ORDER_SUBMISSIONS: Final = frozenset({"create_order"})
_MAX_VENDOR_TEXT: Final = 300
_SIGNATURE = re.compile(r"(signature=)[^&\s\"']+", re.IGNORECASE)
_BANNED_UNTIL = re.compile(r"banned until (\d{13})")
_GUARD_MARKER: Final = "_co_response_guard"
_DUPLICATE_MARKERS: Final = ("duplicate order", "duplicate clientorderid", "clientorderid is duplicated")

Factory = Callable[[str, dict[str, Any], "ccxt.BaseError"], CryptoOrchestratorError]


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every secret and every request signature replaced by ``***``."""
    cleaned = _SIGNATURE.sub(r"\1***", text)
    for secret in secrets:
        # Very short strings would redact ordinary words; real keys are far longer.
        if secret and len(secret) >= 6:
            cleaned = cleaned.replace(secret, "***")
    return cleaned


def retry_after_seconds(
    headers: Mapping[str, Any] | None, *, now: float | None = None, message: str = ""
) -> float | None:
    """Seconds to wait as the venue asked: ``Retry-After`` (seconds or HTTP date), else a
    Binance "IP banned until <ms>" message; ``None`` when the venue did not say."""
    wall = time.time() if now is None else now
    value = _header(headers, "retry-after")
    if value is not None:
        seconds = _parse_retry_after(str(value).strip(), wall)
        if seconds is not None:
            return seconds
    match = _BANNED_UNTIL.search(message)
    if match:
        return max(0.0, int(match.group(1)) / 1000 - wall)
    return None


def _parse_retry_after(text: str, wall: float) -> float | None:
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # RFC 9110 dates are GMT
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - wall)


def _header(headers: Mapping[str, Any] | None, name: str) -> Any:
    if not headers:
        return None
    for key, value in headers.items():
        if str(key).lower() == name:
            return value
    return None


def request_never_sent(error: BaseException) -> bool:
    """True when the exception chain proves the request never reached the venue.

    Only a failure to connect proves it: DNS resolution failed (``socket.gaierror``), the
    connection was refused, or aiohttp's ``ClientConnectorError`` (matched by name, so this
    module does not depend on ccxt's choice of HTTP library). A reset or a read timeout may
    come after the request was sent, so they prove nothing.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror | ConnectionRefusedError):
            return True
        if any(cls.__name__ == "ClientConnectorError" for cls in type(current).__mro__):
            return True
        current = current.__cause__ or current.__context__
    return False


def _outcome_known(error: ccxt.BaseError) -> bool:
    """For a state-changing call: did the venue certainly not act on the request?"""
    if isinstance(
        error, ccxt.RateLimitExceeded | ccxt.DDoSProtection | ccxt.InvalidNonce | ccxt.OnMaintenance
    ):
        return True  # the venue answered and refused
    if isinstance(error, ccxt.OperationFailed):
        return request_never_sent(error)
    return True  # an ExchangeError subclass: the venue answered with a definite refusal


def _is_duplicate(error: ccxt.BaseError) -> bool:
    if isinstance(error, ccxt.DuplicateOrderId):
        return True
    text = str(error).lower()
    return any(marker in text for marker in _DUPLICATE_MARKERS)


def _order_rejected(message: str, details: dict[str, Any], error: ccxt.BaseError) -> CryptoOrchestratorError:
    if _is_duplicate(error):
        details["reason"] = "duplicate_client_order_id"
    return OrderRejected(message, details=details)


def _invalid_symbol(message: str, details: dict[str, Any], _: ccxt.BaseError) -> CryptoOrchestratorError:
    return InvalidSymbol(message, details=details)


def _simple(cls: type[CryptoOrchestratorError]) -> Factory:
    def build(message: str, details: dict[str, Any], _: ccxt.BaseError) -> CryptoOrchestratorError:
        return cls(message, details=details)

    return build


# Order matters: subclasses before their bases (ccxt.OrderNotFound is an InvalidOrder,
# ccxt.BadSymbol a BadRequest, ccxt.RequestTimeout a NetworkError).
_TABLE: Final[tuple[tuple[type[ccxt.BaseError], Factory], ...]] = (
    (ccxt.RequestTimeout, _simple(ExchangeTimeout)),
    (ccxt.NetworkError, _simple(ExchangeUnavailable)),
    (ccxt.BadResponse, _simple(ExchangeUnavailable)),
    # Generic server-side failures ("server busy", "unknown error"): Binance asks to retry.
    (ccxt.OperationFailed, _simple(ExchangeUnavailable)),
    (ccxt.AuthenticationError, _simple(ExchangeAuthenticationError)),
    (ccxt.InsufficientFunds, _simple(InsufficientBalance)),
    (ccxt.OrderNotFound, _simple(OrderNotFoundOnExchange)),
    (ccxt.InvalidOrder, _order_rejected),
    (ccxt.BadSymbol, _invalid_symbol),
    (ccxt.NotSupported, _simple(ExchangeNotSupported)),
)


def translate_ccxt_error(
    error: ccxt.BaseError,
    *,
    exchange_id: str,
    operation: str,
    idempotent: bool = True,
    secrets: Iterable[str | None] = (),
    headers: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> CryptoOrchestratorError:
    """The core error for a ccxt exception raised by ``operation`` on ``exchange_id``.

    ``idempotent=False`` marks a state-changing call (see the module docstring for the
    unknown-outcome rule). ``headers`` are the HTTP response headers when the caller has them;
    the client's response guard also attaches them to the exception itself. ``context`` (e.g.
    the symbol) is copied into ``details``.
    """
    secret_list = list(secrets)
    vendor_text = redact(str(error), secret_list)[:_MAX_VENDOR_TEXT]
    message = f"{exchange_id} {operation} failed: {type(error).__name__}: {vendor_text}".rstrip(": ")
    details: dict[str, Any] = {"exchange": exchange_id, "operation": operation, **(context or {})}
    details["vendor_error"] = type(error).__name__
    status = getattr(error, RESPONSE_STATUS_ATTRIBUTE, None)
    if status is not None:
        details["http_status"] = status

    if isinstance(error, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        response_headers = getattr(error, RESPONSE_HEADERS_ATTRIBUTE, None) or headers
        wait = retry_after_seconds(response_headers, now=now, message=str(error))
        if status is None and isinstance(error, ccxt.DDoSProtection) and " 418 " in str(error):
            details["http_status"] = 418
        return ExchangeRateLimited(message, retry_after=wait, details=details)

    if not idempotent and not _outcome_known(error):
        details["outcome_unknown"] = True
        return ExchangeTimeout(
            f"{exchange_id} {operation}: the outcome is unknown ({type(error).__name__}); "
            "look the order up by its client order id before doing anything else.",
            details=details,
        )

    for vendor_class, factory in _TABLE:
        if isinstance(error, vendor_class):
            return factory(message, details, error)
    if isinstance(error, ccxt.BadRequest | ccxt.ArgumentsRequired | ccxt.OperationRejected) and (
        operation in ORDER_SUBMISSIONS
    ):
        # e.g. Binance -1013 "Filter failure: NOTIONAL": the order, not the venue, is at fault.
        return _order_rejected(message, details, error)
    return ExchangeError(message, details=details)


# --- the response guard ------------------------------------------------------------------


def _looks_like_json(body: Any) -> bool:
    return isinstance(body, str) and body.lstrip()[:1] in ("{", "[")


def install_response_guard(exchange: Any) -> None:
    """Make a ccxt instance report HTTP details on errors and refuse garbled bodies.

    ccxt calls ``handle_errors(code, reason, url, method, headers, body, json, ...)`` on every
    response, then ``handle_http_status_code``. The guard wraps the first so that:

    * every ccxt exception raised for a response carries its status and headers (attributes
      ``RESPONSE_STATUS_ATTRIBUTE`` and ``RESPONSE_HEADERS_ATTRIBUTE``), which is how
      ``Retry-After`` reaches the translation without racing other requests through the
      shared ``exchange.last_response_headers``;
    * a successful status with a body that looks like JSON but does not parse raises
      ``ccxt.BadResponse``; plain ccxt would hand the raw text to its parsers and return a
      structure full of ``None`` instead of failing.

    Installing twice is harmless.
    """
    if getattr(exchange, _GUARD_MARKER, False):
        return
    original = exchange.handle_errors

    def guarded(
        code: Any,
        reason: Any,
        url: Any,
        method: Any,
        headers: Any,
        body: Any,
        response: Any,
        request_headers: Any,
        request_body: Any,
    ) -> Any:
        try:
            result = original(
                code, reason, url, method, headers, body, response, request_headers, request_body
            )
            status = int(code) if code is not None else 0
            if status >= 400:
                # ccxt's next step, run here so that its exception gets the headers too.
                exchange.handle_http_status_code(code, reason or "", url, method, body or "")
            elif response is None and _looks_like_json(body):
                raise ccxt.BadResponse(f"{exchange.id} {method} {url} returned a malformed JSON body")
            return result
        except ccxt.BaseError as error:
            setattr(error, RESPONSE_STATUS_ATTRIBUTE, code)
            setattr(error, RESPONSE_HEADERS_ATTRIBUTE, dict(headers or {}))
            raise

    exchange.handle_errors = guarded
    setattr(exchange, _GUARD_MARKER, True)
