"""The FastAPI application factory. Nothing is built at import time.

Run with ``cryptoorchestrator serve`` or ``uvicorn --factory cryptoorchestrator.api.app:create_app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from cryptoorchestrator import __version__
from cryptoorchestrator.api.errors import install_error_handlers
from cryptoorchestrator.api.middleware import Metrics, RequestContextMiddleware
from cryptoorchestrator.api.ratelimit import RateLimiter, RateLimitGate
from cryptoorchestrator.api.routers import admin, auth, backtests, jobs, market, strategies, system, users
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


def add_flat(app: FastAPI, router: APIRouter, *, prefix: str) -> None:
    """Add a router's routes to the app itself. ``include_router`` nests routers, and every request
    then walks each nested router in turn (a quarter of an authenticated request's time); a flat
    route table keeps matching cheap. Router-level tags and responses are carried over."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"unexpected route type {type(route).__name__}")
        app.add_api_route(
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
        )


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
        metrics=metrics,
        logger=get_logger("cryptoorchestrator.access"),
        access_log=settings.access_log,
    )
    return app
