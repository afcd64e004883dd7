"""A fake Binance spot exchange that runs ccxt's real code, with fault injection.

``FakeBinance`` subclasses ``ccxt.async_support.binance`` and overrides only ccxt's lowest HTTP
method, ``fetch(url, method, headers, body)``. Everything above it is ccxt's own: request
building, HMAC signing, client order id handling, precision rounding, ``parse_market``,
``parse_order``, ``parse_trade``... Requests are answered by ``SimulatedBinanceSpot``, an
in-memory Binance spot REST API, and its answers (status, headers, body) are fed back through
ccxt's ``handle_errors`` and ``handle_http_status_code`` exactly as ccxt's ``fetch`` does, so
the exception classes tests see are the ones ccxt raises in production.

Faults are injected through :meth:`FakeBinance.inject`::

    fake = FakeBinance()
    fake.inject(FaultKind.TIMEOUT, times=2, path_contains="/order")
    fake.inject(FaultKind.RATE_LIMITED, retry_after=7)
    fake.inject(FaultKind.DROPPED_RESPONSE, method="POST", path_contains="/api/v3/order")

Every request is logged (:meth:`FakeBinance.request_log`) with its decoded parameters (the
signature left out), the venue time, the fault applied and whether the venue acted on it.
Always ``await fake.close()`` (or close the client wrapping it).
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import ccxt
import ccxt.async_support as ccxt_async

from cryptoorchestrator.testing.fake_exchange_records import JSON_HEADERS, VenueRequest, VenueResponse
from cryptoorchestrator.testing.fake_exchange_venue import SimulatedBinanceSpot

__all__ = ["FakeBinance", "Fault", "FaultKind", "RecordedRequest", "SimulatedBinanceSpot"]


class FaultKind(StrEnum):
    """What can go wrong between the client and the venue."""

    #: No answer in time; the venue never saw the request (ccxt.RequestTimeout).
    TIMEOUT = "timeout"
    #: The venue acted on the request (an order is placed), but the answer is lost on the way
    #: back: the caller sees a timeout (ccxt.RequestTimeout) for something that happened.
    DROPPED_RESPONSE = "dropped_response"
    #: HTTP 429 with a Binance -1003 body and, when given, a Retry-After header.
    RATE_LIMITED = "rate_limited"
    #: HTTP 418: the IP is banned; Retry-After and a "banned until" body as Binance sends.
    IP_BANNED = "ip_banned"
    #: HTTP 5xx from the gateway (503 unless ``status`` says otherwise); not acted on.
    SERVER_ERROR = "server_error"
    #: HTTP 200 whose JSON body is cut in half; the venue did act on the request.
    MALFORMED_JSON = "malformed_json"
    #: The TCP connection is refused: the request provably never left (ccxt.ExchangeNotAvailable).
    CONNECTION_REFUSED = "connection_refused"


#: Faults after which the venue has processed the request.
_PROCESSED_KINDS = frozenset({FaultKind.DROPPED_RESPONSE, FaultKind.MALFORMED_JSON})


@dataclass(slots=True)
class Fault:
    """One injected fault: fires on matching requests ``times`` times (``None``: forever)."""

    kind: FaultKind
    times: int | None = 1
    path_contains: str | None = None
    method: str | None = None
    retry_after: float | None = None
    status: int | None = None
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_contains is None or self.path_contains in path

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    params: Mapping[str, str]
    time_ms: int
    authenticated: bool
    fault: FaultKind | None = None
    processed: bool = True
    status: int | None = None


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class FakeBinance(ccxt_async.binance):  # type: ignore[misc]
    """ccxt's Binance adapter wired to an in-memory venue instead of the network.

    ``config`` is ccxt's constructor dictionary (merged over spot-only defaults and the
    venue's own API key and secret); ``venue`` is the simulated exchange (a fresh
    ``SimulatedBinanceSpot(**venue_options)`` by default).
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        venue: SimulatedBinanceSpot | None = None,
        **venue_options: Any,
    ) -> None:
        venue = venue or SimulatedBinanceSpot(**venue_options)
        defaults: dict[str, Any] = {
            "apiKey": venue.api_key,
            "secret": venue.secret,
            "enableRateLimit": False,
            "options": {
                # Spot only: load_markets asks /api/v3/exchangeInfo and nothing else.
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
            },
        }
        # Set before ccxt's constructor, which reads every public attribute once.
        self.venue = venue
        self._faults: list[Fault] = []
        self._log: list[RecordedRequest] = []
        super().__init__(_merge(defaults, config or {}))
        # ccxt's close() waits this many ms for sockets to drain; there are none.
        self.timeout_on_exit = 0

    # --- fault injection and request log --------------------------------------------------

    def inject(
        self,
        kind: FaultKind,
        *,
        times: int | None = 1,
        path_contains: str | None = None,
        method: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> Fault:
        """Make the next ``times`` matching requests fail with ``kind``.

        ``path_contains`` matches a substring of the URL path (``"/order"``, ``"/depth"``);
        ``method`` an HTTP method. ``retry_after`` (seconds) adds a Retry-After header to
        RATE_LIMITED and IP_BANNED answers; ``status`` picks the SERVER_ERROR code. Faults
        fire in the order they were injected.
        """
        fault = Fault(
            kind=FaultKind(kind),
            times=times,
            path_contains=path_contains,
            method=method,
            retry_after=retry_after,
            status=status,
        )
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every pending fault."""
        self._faults.clear()

    def pending_faults(self) -> list[Fault]:
        """Injected faults that have not fired all their times yet."""
        return [fault for fault in self._faults if not fault.exhausted]

    def request_log(self) -> list[RecordedRequest]:
        """Every request received, oldest first (a copy)."""
        return list(self._log)

    def requests_to(self, path_contains: str, *, method: str | None = None) -> list[RecordedRequest]:
        """Logged requests whose path contains ``path_contains`` (and with ``method``)."""
        return [
            request
            for request in self._log
            if path_contains in request.path and (method is None or request.method == method.upper())
        ]

    def clear_request_log(self) -> None:
        self._log.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.matches(method, path):
                fault.fired += 1
                return fault
        return None

    # --- ccxt's HTTP layer ----------------------------------------------------------------

    async def fetch(
        self,
        url: str,
        method: str = "GET",
        headers: Mapping[str, Any] | None = None,
        body: str | None = None,
    ) -> Any:
        """Answer a request from the simulated venue instead of the network."""
        if self.closed_by_user:
            raise ccxt.ExchangeClosedByUser(self.id + " instance was closed by the user")
        # Real I/O yields to the loop; so does the fake, so concurrent callers interleave.
        await asyncio.sleep(0)
        request_headers = dict(headers or {})
        request = self._decode(url, method, request_headers, body)
        fault = self._take_fault(request.method, request.path)
        kind = fault.kind if fault is not None else None
        details = " ".join([self.id, method, url])
        if kind is FaultKind.TIMEOUT:
            self._record(request, kind, processed=False, status=None)
            raise ccxt.RequestTimeout(details) from TimeoutError()
        if kind is FaultKind.CONNECTION_REFUSED:
            self._record(request, kind, processed=False, status=None)
            raise ccxt.ExchangeNotAvailable(details) from ConnectionRefusedError(111, "Connection refused")
        if fault is not None and kind not in _PROCESSED_KINDS:
            response = self._fault_response(fault)
        else:
            response = self.venue.handle(request)
        self._record(
            request, kind, processed=kind is None or kind in _PROCESSED_KINDS, status=response.status
        )
        if kind is FaultKind.DROPPED_RESPONSE:
            raise ccxt.RequestTimeout(details) from TimeoutError()
        text = response.text()
        if kind is FaultKind.MALFORMED_JSON:
            text = text[: max(1, len(text) // 2)]
        return self._deliver(url, method, request_headers, body, response, text)

    def _decode(self, url: str, method: str, headers: Mapping[str, Any], body: str | None) -> VenueRequest:
        parts = urlsplit(url)
        raw = body if method.upper() in ("POST", "PUT") and body else parts.query
        signed_payload, signature = raw, None
        if "&signature=" in raw:
            signed_payload, _, signature = raw.rpartition("&signature=")
        elif raw.startswith("signature="):
            signed_payload, signature = "", raw.removeprefix("signature=")
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        if body and method.upper() in ("POST", "PUT"):
            params.update(parse_qsl(body, keep_blank_values=True))
        params.pop("signature", None)
        api_key = next((str(v) for k, v in headers.items() if k.lower() == "x-mbx-apikey"), None)
        return VenueRequest(
            method=method.upper(),
            path=parts.path,
            params=params,
            api_key=api_key,
            signed_payload=signed_payload if signature is not None else None,
            signature=signature,
        )

    def _record(
        self, request: VenueRequest, kind: FaultKind | None, *, processed: bool, status: int | None
    ) -> None:
        self._log.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                params=dict(request.params),
                time_ms=self.venue.now_ms(),
                authenticated=request.api_key is not None,
                fault=kind,
                processed=processed,
                status=status,
            )
        )

    def _fault_response(self, fault: Fault) -> VenueResponse:
        headers = dict(JSON_HEADERS)
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        if fault.kind is FaultKind.RATE_LIMITED:
            message = (
                "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute. "
                "Please use WebSocket Streams for live updates to avoid polling the API."
            )
            return VenueResponse(429, {"code": -1003, "msg": message}, headers)
        if fault.kind is FaultKind.IP_BANNED:
            until = self.venue.now_ms() + int((fault.retry_after or 120) * 1000)
            message = (
                f"Way too many requests; IP(127.0.0.1) banned until {until}. "
                "Please use WebSocket Streams for live updates to avoid bans."
            )
            return VenueResponse(418, {"code": -1003, "msg": message}, headers)
        status = fault.status or 503
        page = f"<html><body><h1>{status} {_reason(status)}</h1></body></html>"
        return _TextResponse(status, page, {"Content-Type": "text/html"})

    def _deliver(
        self,
        url: str,
        method: str,
        request_headers: Mapping[str, Any],
        request_body: str | None,
        response: VenueResponse,
        text: str,
    ) -> Any:
        """The tail of ccxt's ``fetch``: record, decode, ``handle_errors``, status check."""
        status, reason, headers = response.status, _reason(response.status), dict(response.headers)
        http_response = self.on_rest_response(
            status, reason, url, method, headers, text, request_headers, request_body
        )
        json_response = self.parse_json(http_response)
        if self.enableLastHttpResponse:
            self.last_http_response = http_response
        if self.enableLastResponseHeaders:
            self.last_response_headers = headers
        if self.enableLastJsonResponse:
            self.last_json_response = json_response
        self.handle_errors(
            status, reason, url, method, headers, http_response, json_response, request_headers, request_body
        )
        self.handle_http_status_code(status, reason, url, method, http_response)
        if json_response is not None:
            return json_response
        return http_response


@dataclass(frozen=True, slots=True)
class _TextResponse(VenueResponse):
    """A non-JSON answer (a gateway's HTML error page)."""

    def text(self) -> str:
        return str(self.body)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""
