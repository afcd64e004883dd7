"""Pure ASGI middleware (BaseHTTPMiddleware costs too much per request):

* request ids (``X-Request-ID`` in and out), bound into structured logs;
* Prometheus metrics by route template;
* the last line of defence: an unexpected exception becomes a 500 ``INTERNAL_ERROR`` envelope
  with no traceback in the body and the full traceback in the log.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cryptoorchestrator.api.errors import envelope
from cryptoorchestrator.api.ratelimit import RateLimitGate

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class Metrics:
    """The HTTP metrics of one app, in a registry of its own (nothing global)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route template and status code.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ("method", "route"),
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "http_requests_in_progress", "HTTP requests being served now.", registry=self.registry
        )
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: str, seconds: float) -> None:
        # labels() costs a lock and a tuple hash per call; the label sets are few, so keep them.
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(method, route, status), self.latency.labels(method, route))
            if len(self._children) < 10_000:
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


_VERSIONED = re.compile(r"^/api/v\d+(/|$)")


def alias_to_v1(scope: Scope) -> None:
    """``/api/x`` is ``/api/v1/x`` (the contract's unversioned alias)."""
    path = scope["path"]
    if path.startswith("/api/") and not _VERSIONED.match(path):
        scope["path"] = "/api/v1" + path[4:]
        raw = scope.get("raw_path")
        if raw is not None:
            scope["raw_path"] = b"/api/v1" + raw[4:]


def route_template(scope: Scope) -> str:
    """The matched route as a template (``/api/v1/auth/api-keys/{key_id}``): low-cardinality labels."""
    if scope.get("route") is None:
        return "unmatched"
    segments = str(scope["path"]).split("/")
    for name, value in (scope.get("path_params") or {}).items():
        text = str(value)
        for index in range(len(segments) - 1, -1, -1):
            if segments[index] == text:
                segments[index] = "{" + name + "}"
                break
    return "/".join(segments)


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        logger: Any,
        access_log: bool = True,
        gate: RateLimitGate | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.logger = logger
        self.access_log = access_log
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        alias_to_v1(scope)
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _SAFE_REQUEST_ID.fullmatch(incoming) else os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status_holder = {"status": 500, "started": False}
        extra: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode())]
        rate_headers: list[tuple[bytes, bytes]] = []

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers = [*message.get("headers", []), *extra]
                # A 429 from a route (the per-account auth limit) carries its own, stricter headers.
                if message["status"] != 429:
                    headers.extend(rate_headers)
                message["headers"] = headers
            await send(message)

        start = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            decision = await self.gate.decide(scope, request_id) if self.gate is not None else None
            if decision is not None:
                if decision.rejection is not None:
                    await self._send_json(send_wrapper, 429, decision.rejection, decision.headers)
                    return
                rate_headers = decision.headers
            await self.app(scope, receive, send_wrapper)
        except Exception:
            self.logger.exception("unhandled_exception", method=scope["method"], path=scope["path"])
            if not status_holder["started"]:
                body = json.dumps(
                    envelope(500, "INTERNAL_ERROR", "An internal error occurred.", request_id=request_id)
                ).encode()
                await self._send_json(send_wrapper, 500, body, [])
            status_holder["status"] = 500
        finally:
            self.metrics.in_flight.dec()
            template = route_template(scope)
            elapsed = time.perf_counter() - start
            status = status_holder["status"]
            self.metrics.observe(scope["method"], template, str(status), elapsed)
            if self.access_log:
                # request_id and user_id come from the bound context.
                self.logger.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    route=template,
                    status=status,
                    duration_ms=round(elapsed * 1000, 3),
                )

    @staticmethod
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
