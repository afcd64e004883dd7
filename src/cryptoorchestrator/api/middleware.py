"""Pure ASGI middleware (BaseHTTPMiddleware costs too much per request), one layer doing, per request:

* request ids (``X-Request-ID`` in and out), bound into structured logs;
* the rate limit (``X-RateLimit-*`` headers, 429 envelope) - see ``api/ratelimit.py``;
* Bearer-token authentication, once: the principal lands in ``scope["state"]["principal"]``
  (a failure in ``scope["state"]["auth_error"]``) for the ``current_principal`` dependency;
* Prometheus metrics by route template and the access log (request and user ids);
* the last line of defence: an unexpected exception becomes a 500 ``INTERNAL_ERROR`` envelope
  with no traceback in the body and the full traceback in the log.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any, Protocol

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cryptoorchestrator.api.errors import envelope
from cryptoorchestrator.api.ratelimit import RateLimitGate
from cryptoorchestrator.config.logging import EventLogger
from cryptoorchestrator.domain.identity import Principal

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_VERSIONED = re.compile(r"^/api/v\d+(/|$)")


class TokenAuthenticator(Protocol):
    async def authenticate_token(self, token: str) -> Principal: ...


_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BUCKET_LABELS = (
    *(str(float(bound)) for bound in _LATENCY_BUCKETS),
    "+Inf",
)  # as prometheus_client writes them


class _Series:
    """One (method, route, status)'s request count, with its latency histogram (non-cumulative
    bucket counts, the last one past the largest bound)."""

    __slots__ = ("buckets", "count", "created", "sum")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.buckets = [0] * (len(_LATENCY_BUCKETS) + 1)
        self.created = time.time()


class Metrics:
    """The HTTP metrics of one app, in a registry of its own (nothing global):

    * ``http_requests_total{method, route, status}`` (counter);
    * ``http_request_duration_seconds{method, route}`` (histogram);
    * ``http_requests_in_progress`` (gauge).

    Counted in plain attributes on the event loop's thread and turned into Prometheus metrics
    when scraped: prometheus_client's own metric objects take a lock for every increment (five
    per request), which showed in every request's cost. The exposition is the same.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.in_flight = 0
        self._series: dict[tuple[str, str, int], _Series] = {}
        self.registry.register(self)

    def observe(self, method: str, route: str, status: int | str, seconds: float) -> None:
        key = (method, route, int(status))
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= 10_000:  # label sets are few; a bound keeps odd traffic harmless
                key = (method, "other", int(status))
                series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series()
        series.count += 1
        series.sum += seconds
        series.buckets[bisect.bisect_left(_LATENCY_BUCKETS, seconds)] += 1

    def collect(self) -> Iterator[Metric]:
        """The registry's view (``prometheus_client`` collector protocol)."""
        series = list(self._series.items())
        requests = CounterMetricFamily(
            "http_requests_total",
            "HTTP requests by method, route template and status code.",
            labels=("method", "route", "status"),
        )
        latency = HistogramMetricFamily(
            "http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            labels=("method", "route"),
        )
        histograms: dict[tuple[str, str], _Series] = {}
        for (method, route, status), one in series:
            requests.add_metric((method, route, str(status)), one.count, created=one.created)
            merged = histograms.get((method, route))
            if merged is None:
                merged = histograms[(method, route)] = _Series()
                merged.created = one.created
            merged.count += one.count
            merged.sum += one.sum
            merged.buckets = [a + b for a, b in zip(merged.buckets, one.buckets, strict=True)]
            merged.created = min(merged.created, one.created)
        for (method, route), merged in histograms.items():
            cumulative = itertools.accumulate(merged.buckets)
            latency.add_metric(
                (method, route), list(zip(_BUCKET_LABELS, cumulative, strict=True)), merged.sum
            )
            latency.samples.append(
                Sample(latency.name + "_created", {"method": method, "route": route}, merged.created)
            )
        yield requests
        yield latency
        yield GaugeMetricFamily(
            "http_requests_in_progress", "HTTP requests being served now.", value=self.in_flight
        )


def alias_to_v1(scope: Scope) -> None:
    """``/api/x`` is ``/api/v1/x`` (the contract's unversioned alias)."""
    path: str = scope["path"]
    if not path.startswith("/api/") or path.startswith("/api/v1/") or _VERSIONED.match(path):
        return
    scope["path"] = "/api/v1" + path[4:]
    raw = scope.get("raw_path")
    if raw is not None:
        scope["raw_path"] = b"/api/v1" + raw[4:]


def route_template(scope: Scope) -> str:
    """The matched route as a template (``/api/v1/auth/api-keys/{key_id}``): low-cardinality labels."""
    route = scope.get("route")
    if route is None:
        return "unmatched"
    template = getattr(route, "path_format", None)
    if isinstance(template, str):
        return template
    segments = str(scope["path"]).split("/")
    for name, value in (scope.get("path_params") or {}).items():
        text = str(value)
        for index in range(len(segments) - 1, -1, -1):
            if segments[index] == text:
                segments[index] = "{" + name + "}"
                break
    return "/".join(segments)


def _read_headers(scope: Scope) -> tuple[str | None, str | None, str | None]:
    """X-Request-ID, Authorization and X-API-Key, in one pass over the headers."""
    request_id = authorization = api_key = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"x-api-key":
            api_key = value.decode("latin-1")
        elif name == b"x-request-id":
            request_id = value.decode("latin-1")
    return request_id, authorization, api_key


def bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


#: The status recorded for a request whose client disconnected before it was answered (nginx's).
CLIENT_CLOSED_REQUEST = 499


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        logger: Any,
        access_log: bool = True,
        gate: RateLimitGate | None = None,
        auth: TokenAuthenticator | None = None,
        access_logger: EventLogger | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.logger = logger
        self.access_log = access_log
        self.gate = gate
        self.auth = auth
        self.access_logger = access_logger or EventLogger("cryptoorchestrator.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                alias_to_v1(scope)
            await self.app(scope, receive, send)
            return
        alias_to_v1(scope)
        incoming, authorization, api_key = _read_headers(scope)
        request_id = incoming if incoming and _SAFE_REQUEST_ID.fullmatch(incoming) else os.urandom(16).hex()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        response = _ResponseHeaders(send, request_id)
        start = time.perf_counter()
        self.metrics.in_flight += 1
        try:
            if self.gate is not None:
                decision = await self.gate.decide(scope, request_id, authorization, api_key)
                if decision is not None:
                    response.rate_headers = decision.headers
                    if decision.rejection is not None:
                        await _send_json(response.send, 429, decision.rejection, decision.headers)
                        return
            token = bearer_token(authorization)
            if token is not None and self.auth is not None:
                await self._authenticate(token, state)
            await self.app(scope, receive, response.send)
        except ClientDisconnect:
            # The client went away while its body was being read: nobody to answer, nothing
            # went wrong here. Counted as 499 (the status proxies use for it), not logged as an error.
            self.logger.info("client_disconnected", method=scope["method"], path=scope["path"])
            response.status = CLIENT_CLOSED_REQUEST
        except Exception:
            self.logger.exception("unhandled_exception", method=scope["method"], path=scope["path"])
            if not response.started:
                body = json.dumps(
                    envelope(500, "INTERNAL_ERROR", "An internal error occurred.", request_id=request_id)
                ).encode()
                await _send_json(response.send, 500, body, [])
            response.status = 500
        finally:
            self.metrics.in_flight -= 1
            elapsed = time.perf_counter() - start
            template = route_template(scope)
            self.metrics.observe(scope["method"], template, response.status, elapsed)
            if self.access_log:
                # request_id and user_id come from the bound context.
                self.access_logger.info(
                    "request",
                    {
                        "method": scope["method"],
                        "path": scope["path"],
                        "route": template,
                        "status": response.status,
                        "duration_ms": round(elapsed * 1000, 3),
                    },
                )

    async def _authenticate(self, token: str, state: dict[str, Any]) -> None:
        """Resolve the caller once, here; ``current_principal`` only reads the result. A failure is
        kept, not raised: public routes ignore credentials, protected ones raise it."""
        assert self.auth is not None
        try:
            principal = await self.auth.authenticate_token(token)
        except Exception as exc:  # re-raised by current_principal, where a route needs a caller
            state["auth_error"] = exc
            return
        state["principal"] = principal
        state["user_id"] = principal.user.id
        structlog.contextvars.bind_contextvars(user_id=principal.user.id)


class _ResponseHeaders:
    """Wraps ``send``: adds X-Request-ID and the rate-limit headers, remembers the status."""

    __slots__ = ("_send", "_tail", "rate_headers", "started", "status")

    def __init__(self, send: Send, request_id: str) -> None:
        self._send = send
        self._tail: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode())]
        self.rate_headers: list[tuple[bytes, bytes]] = []
        self.status = 500
        self.started = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            status = message["status"]
            self.status = status
            self.started = True
            headers = [*message.get("headers", ()), *self._tail]
            # A 429 from a route (the per-account auth limit) carries its own, stricter headers.
            if status != 429:
                headers.extend(self.rate_headers)
            message["headers"] = headers
        await self._send(message)


async def _send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
