"""The FastAPI application factory. Nothing is built at import time.

Run with ``cryptoorchestrator serve`` or ``uvicorn --factory cryptoorchestrator.api.app:create_app``.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from cryptoorchestrator import __version__
from cryptoorchestrator.api.errors import install_error_handlers
from cryptoorchestrator.api.middleware import Metrics, RequestContextMiddleware
from cryptoorchestrator.api.ratelimit import RateLimiter, RateLimitGate
from cryptoorchestrator.api.routers import (
    admin,
    auth,
    backtests,
    bots,
    exchanges,
    jobs,
    market,
    orders,
    portfolio,
    strategies,
    system,
    users,
)
from cryptoorchestrator.bootstrap import Container, build_container
from cryptoorchestrator.config.logging import configure_logging, get_logger
from cryptoorchestrator.config.settings import Settings, load_settings

API_ROUTERS: tuple[APIRouter, ...] = (
    system.router,
    auth.router,
    users.router,
    admin.router,
    jobs.router,
    market.router,
    strategies.router,
    backtests.router,
    orders.router,
    portfolio.router,
    exchanges.router,
    bots.router,
)

DESCRIPTION = """
Self-hosted crypto trading platform API.

* Authenticate with `Authorization: Bearer <access token>` (from `/api/v1/auth/login`) or
  `X-API-Key: <key>` (from `/api/v1/auth/api-keys`; scope `read` for GET, `trade` for changes).
* Every error has the body `{"error": {"code", "message", "status_code", "details", "request_id"}}`.
* Lists answer `{"items", "total", "limit", "offset"}`.
* Money is sent as decimal strings. Times are ISO 8601 UTC.
* `/api/...` answers the same routes as `/api/v1/...`.
"""


PUBLIC_OPERATIONS = {
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/api/v1/health"),
    ("get", "/api/v1/status"),
    ("post", "/api/v1/auth/register"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
}


def install_openapi_security(app: FastAPI) -> None:
    """Declare the two auth schemes and mark every non-public operation as needing one."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = {
            "BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                           "description": "Access token from /api/v1/auth/login"},
            "ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                           "description": "API key from /api/v1/auth/api-keys"},
        }  # fmt: skip
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                if (method, path) not in PUBLIC_OPERATIONS:
                    operation["security"] = [{"BearerAuth": []}, {"ApiKeyAuth": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


class FlatRoute(APIRoute):
    """An ``APIRoute`` that turns away a request for another path with one string test.

    The router tries each route in turn until one matches, and a plain route's test is four
    Python calls and a regex: about 2 µs, so ~30 µs before a request reaches a route in the middle
    of the table. A route's path up to its first parameter (all of it for a static route) is a
    literal prefix of every path its regex accepts, so a path that fails the string test cannot
    match, and anything else gets the full test. Only for routes added flat to the app (a
    mounted or prefixed path is not what ``scope["path"]`` holds, so with a ``root_path`` the
    full test always runs). A router's own route class (``DecimalJSONRoute``...) is kept: see
    ``flat_route_class``."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        head, brace, _ = self.path_format.partition("{")
        self._head = head
        self._static = None if brace else self.path_format

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and not scope.get("root_path"):
            path = scope["path"]
            static = self._static
            if (path != static) if static is not None else not path.startswith(self._head):
                return Match.NONE, {}
        return super().matches(scope)


_FLAT_CLASSES: dict[type[APIRoute], type[APIRoute]] = {APIRoute: FlatRoute}


def flat_route_class(route_class: type[APIRoute]) -> type[APIRoute]:
    """``route_class`` with ``FlatRoute``'s matching in front of its own (one class per class)."""
    flat = _FLAT_CLASSES.get(route_class)
    if flat is None:
        flat = _FLAT_CLASSES[route_class] = type(f"Flat{route_class.__name__}", (FlatRoute, route_class), {})
    return flat


def add_flat(app: FastAPI, router: APIRouter, *, prefix: str) -> None:
    """Add a router's routes to the app itself. ``include_router`` nests routers, and every request
    then walks each nested router in turn (a quarter of an authenticated request's time); a flat
    route table keeps matching cheap (see ``FlatRoute``). Router-level tags and responses are
    carried over."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"unexpected route type {type(route).__name__}")
        app.router.add_api_route(
            prefix + route.path,
            route.endpoint,
            methods=sorted(route.methods),
            response_model=route.response_model,
            status_code=route.status_code,
            tags=list(route.tags),
            responses={**router.responses, **route.responses},
            summary=route.summary,
            description=route.description,
            response_description=route.response_description,
            include_in_schema=route.include_in_schema,
            name=route.name,
            operation_id=route.operation_id,
            response_class=route.response_class,
            dependencies=list(route.dependencies),
            route_class_override=flat_route_class(type(route)),
        )


_frozen = False


def freeze_startup_objects() -> None:
    """``gc.freeze()`` once per process, after the first app started: what startup built (modules,
    routes, models, the container) lives as long as the process, and the cyclic collector then
    stops walking it on every full collection (which took ~0.2 s under load: the order
    benchmark's p99). Once only: later apps in the same process (tests) are collected as usual."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


def _bucket(path: str) -> str:
    """A path's first three segments (``/api/v1/orders`` for ``/api/v1/orders/42``)."""
    return "/".join(path.split("/", 4)[:4])


class RouteIndex:
    """The app router's dispatch, trying only the routes that can match a path's first segments.

    FastAPI's router tries every route in table order until one matches: over a hundred tests
    for a route late in the table, a tenth of a simple request's time. A ``FlatRoute`` matches
    only paths that start with its literal head (all of it for a static route), so for the first
    three segments of a path the routes that could match are known in advance; they are tried
    in table order, so the first full match is the one the table scan finds. Any other kind of
    route (the docs pages, a mount) is always a candidate. A request no candidate fully matches
    (404, 405, a redirect for a trailing slash), a websocket, a ``root_path`` or FastAPI's own
    telemetry go to the router's own dispatch unchanged."""

    MAX_BUCKETS = 512

    def __init__(self, router: Any, update_scope: Any) -> None:
        self._router = router
        self._fallback = router.app
        self._update_scope = update_scope
        self._buckets: dict[str, list[BaseRoute]] = {}
        self._count = -1

    def candidates(self, path: str) -> list[BaseRoute]:
        routes: list[BaseRoute] = self._router.routes
        if len(routes) != self._count:  # routes were added: start over
            self._buckets.clear()
            self._count = len(routes)
        key = _bucket(path)
        found = self._buckets.get(key)
        if found is None:
            found = [route for route in routes if _may_match(route, key)]
            if len(self._buckets) < self.MAX_BUCKETS:
                self._buckets[key] = found
        return found

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("root_path") or "fastapi.telemetry" in scope:
            await self._fallback(scope, receive, send)
            return
        for route in self.candidates(scope["path"]):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope.setdefault("router", self._router)
                self._update_scope(scope, child_scope)
                await route.handle(scope, receive, send)
                return
        await self._fallback(scope, receive, send)


def _may_match(route: BaseRoute, key: str) -> bool:
    """Whether ``route`` can match some path whose first three segments are ``key``."""
    if not isinstance(route, FlatRoute):
        return True
    if route._static is not None:
        return _bucket(route._static) == key
    head = route._head
    return key.startswith(head) or (head.startswith(key) and head[len(key) : len(key) + 1] in ("", "/"))


def install_route_index(app: FastAPI) -> bool:
    """Put :class:`RouteIndex` in front of the app router's dispatch. Only where it is known to
    dispatch exactly as the router does (no router form limits; FastAPI's scope helper found);
    returns whether it was installed."""
    try:
        from fastapi.routing import _update_scope
    except ImportError:  # pragma: no cover - a FastAPI without it: keep its own dispatch
        return False
    router = app.router
    if getattr(router, "form_limits", None) or router.middleware_stack != router.app:
        return False
    router.middleware_stack = RouteIndex(router, _update_scope)
    return True


def move_docs_routes_last(app: FastAPI) -> None:
    """FastAPI puts its own pages (/openapi.json, /docs, /redoc) first in the route table, so
    every API request tested them first. Each goes last when no other route accepts its path,
    which leaves what every path matches unchanged."""
    routes: list[BaseRoute] = app.router.routes
    pages = [r for r in routes if type(r) is Route and "{" not in r.path_format]
    for page in pages:
        probe: Scope = {
            "type": "http", "path": page.path_format, "root_path": "", "method": "GET",
            "headers": [], "path_params": {},
        }  # fmt: skip
        if not any(other.matches(probe)[0] is not Match.NONE for other in routes if other is not page):
            routes.remove(page)
            routes.append(page)


def create_app(settings: Settings | None = None, *, container: Container | None = None) -> FastAPI:
    settings = settings or (container.settings if container else load_settings())
    settings.check_startup()
    configure_logging(level=settings.log_level, json=settings.log_json)
    logger = get_logger("cryptoorchestrator.api")
    container = container or build_container(settings)
    limiter = RateLimiter(settings)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info("startup", environment=settings.env.value, version=__version__)
        await container.start()
        freeze_startup_objects()
        try:
            yield
        finally:
            await limiter.close()
            await container.close()
            logger.info("shutdown")

    app = FastAPI(
        title="CryptoOrchestrator API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        debug=False,
        docs_url="/docs",
        redoc_url="/redoc",
        openapi_url="/openapi.json",
        telemetry={
            "tracing": settings.opentelemetry,
            "metrics": settings.opentelemetry,
            "logs": settings.opentelemetry,
        },
    )
    app.state.container = container
    app.state.limiter = limiter
    app.state.metrics = metrics
    app.state.logger = logger

    install_error_handlers(app)
    add_flat(app, system.root_router, prefix="")
    # seed 002: "/api/ is v1, the default": RequestContextMiddleware rewrites /api/... to
    # /api/v1/... so the alias answers the same handlers without doubling the route table.
    for router in API_ROUTERS:
        add_flat(app, router, prefix="/api/v1")
    move_docs_routes_last(app)
    install_route_index(app)

    install_openapi_security(app)

    # Added last = outermost: the request context (ids, metrics, access log, rate limits) wraps CORS.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[
                "X-Request-ID",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
            ],
        )
    app.add_middleware(
        RequestContextMiddleware,
        gate=RateLimitGate(limiter=limiter, settings=settings, tokens=container.tokens),
        auth=container.auth,
        metrics=metrics,
        logger=get_logger("cryptoorchestrator.access"),
        access_log=settings.access_log,
    )
    return app
