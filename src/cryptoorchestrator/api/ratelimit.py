"""Rate limits with the ``limits`` library (memory by default, Redis when configured).

Every request counts against exactly one limit: its route category's (``market``, ``trading``,
``portfolio``, ``strategies``, ``ml``, ``backtests``, ``auth``) or the default one, keyed by the
authenticated user (or API key) and otherwise by client IP. Every response carries
``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``; a 429 adds
``Retry-After``. Login and register also have a per-account limit (see the auth router).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.types import Scope

from cryptoorchestrator.api.errors import envelope
from cryptoorchestrator.config.settings import Settings
from cryptoorchestrator.core.errors import RateLimitExceeded
from cryptoorchestrator.security.tokens import TokenService

API_PREFIXES = ("/api/v1/", "/api/v2/", "/api/")

# Category -> (first path segments, methods it applies to or None for all).
CATEGORIES: dict[str, tuple[tuple[str, ...], frozenset[str] | None]] = {
    "auth": (("auth/login", "auth/register"), None),
    "market": (("market", "market-data", "markets"), None),
    "trading": (("orders", "trading", "positions", "trades", "leverage"), None),
    "portfolio": (("portfolio", "balance", "account", "pnl"), None),
    "strategies": (("strategies",), None),
    # Expensive work is limited where it is started; polling its progress is not.
    "ml": (("ml", "ml-v2"), frozenset({"POST", "PUT", "PATCH", "DELETE"})),
    "backtests": (("backtests",), frozenset({"POST", "PUT", "PATCH", "DELETE"})),
}


@dataclass(frozen=True, slots=True)
class LimitState:
    limit: int
    remaining: int
    reset_time: float
    allowed: bool

    @property
    def reset_at(self) -> int:
        return math.ceil(self.reset_time)

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset_time - time.time()))

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(self.reset_at).encode()),
        ]
        if not self.allowed:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        return headers


class RateLimiter:
    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        self.enabled = settings.rate_limit_enabled
        self._pool: Any = None
        if storage is None and settings.redis_url:
            import redis.asyncio

            # redis-py's asyncio client (already a dependency) rather than limits' default, coredis;
            # the pool is ours so that shutdown closes its connections.
            self._pool = redis.asyncio.ConnectionPool.from_url(settings.redis_url)
            storage = RedisStorage(
                _async_uri(settings.redis_url), implementation="redispy", connection_pool=self._pool
            )
        elif storage is None:
            storage = MemoryStorage()
        self.storage = storage
        self._strategy = SlidingWindowCounterRateLimiter(storage)
        self.items: dict[str, RateLimitItem] = {
            "default": parse(settings.rate_limit_default),
            "anonymous": parse(settings.rate_limit_anonymous),
            "auth": parse(settings.rate_limit_auth),
            "auth_account": parse(settings.rate_limit_auth_account),
            "market": parse(settings.rate_limit_market),
            "trading": parse(settings.rate_limit_trading),
            "portfolio": parse(settings.rate_limit_portfolio),
            "strategies": parse(settings.rate_limit_strategies),
            "ml": parse(settings.rate_limit_ml),
            "backtests": parse(settings.rate_limit_backtests),
        }

    async def hit(self, category: str, key: str) -> LimitState:
        item = self.items[category]
        allowed = await self._strategy.hit(item, category, key)
        return await self._state(item, category, key, allowed)

    async def peek(self, category: str, key: str) -> LimitState:
        item = self.items[category]
        allowed = await self._strategy.test(item, category, key)
        return await self._state(item, category, key, allowed)

    async def _state(self, item: RateLimitItem, category: str, key: str, allowed: bool) -> LimitState:
        stats = await self._strategy.get_window_stats(item, category, key)
        return LimitState(
            limit=item.amount,
            remaining=max(0, stats.remaining),
            reset_time=stats.reset_time,
            allowed=allowed,
        )

    async def check_account(self, key: str) -> None:
        """Raise 429 when an account has used up its login/register attempts."""
        if not self.enabled:
            return
        state = await self.peek("auth_account", key.lower())
        if not state.allowed:
            raise _exceeded(state, "Too many attempts for this account. Please wait before retrying.")

    async def count_account_attempt(self, key: str) -> None:
        if self.enabled:
            await self.hit("auth_account", key.lower())

    async def reset(self) -> None:
        await self.storage.reset()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    async def ping(self) -> bool:
        return bool(await self.storage.check())


def _exceeded(state: LimitState, message: str) -> RateLimitExceeded:
    return RateLimitExceeded(
        message, retry_after=state.retry_after, limit=state.limit, reset_at=state.reset_at
    )


def _async_uri(url: str) -> str:
    return url if url.startswith("async+") else f"async+{url}"


def categorise(path: str, method: str) -> str | None:
    key = (path, method)
    try:
        return _CATEGORY_CACHE[key]
    except KeyError:
        pass
    category = _categorise(path, method)
    if len(_CATEGORY_CACHE) < 4096:  # bounded: ids in paths must not grow it forever
        _CATEGORY_CACHE[key] = category
    return category


_CATEGORY_CACHE: dict[tuple[str, str], str | None] = {}


def _categorise(path: str, method: str) -> str | None:
    for prefix in API_PREFIXES:
        if path.startswith(prefix):
            rest = path[len(prefix) :]
            break
    else:
        return None
    for category, (heads, methods) in CATEGORIES.items():
        if methods is not None and method not in methods:
            continue
        for head in heads:
            if rest == head or rest.startswith(head + "/"):
                return category
    return None


@dataclass(frozen=True, slots=True)
class GateDecision:
    headers: list[tuple[bytes, bytes]]
    rejection: bytes | None  # the 429 body when the request is refused


class RateLimitGate:
    """Decides, per request, which limit it counts against and whether it may pass. Runs inside
    the request-context middleware (one ASGI layer for both, for speed)."""

    def __init__(self, *, limiter: RateLimiter, settings: Settings, tokens: TokenService) -> None:
        self.limiter = limiter
        self._tokens = tokens
        self._trusted = set(settings.trusted_proxies)

    def _identity(self, scope: Scope) -> tuple[str, bool]:
        authorization = api_key = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"x-api-key":
                api_key = value.decode("latin-1")
        if authorization and authorization[:7].lower() == "bearer ":
            subject = self._tokens.subject(authorization[7:].strip())
            if subject is not None:
                return f"user:{subject}", True
        if api_key:
            parts = api_key.split("_", 2)
            if len(parts) == 3:
                return f"key:{parts[1]}", True
        return f"ip:{client_ip(scope, self._trusted)}", False

    async def decide(self, scope: Scope, request_id: str) -> GateDecision | None:
        if not self.limiter.enabled:
            return None
        category = categorise(scope["path"], scope["method"])
        if category == "auth":
            key, authenticated = f"ip:{client_ip(scope, self._trusted)}", False
        else:
            key, authenticated = self._identity(scope)
        if category is None:
            category = "default" if authenticated else "anonymous"
        state = await self.limiter.hit(category, key)
        if state.allowed:
            return GateDecision(state.headers(), None)
        body = json.dumps(
            envelope(
                429,
                "RATE_LIMIT_EXCEEDED",
                "Too many requests. Please wait before retrying.",
                request_id=request_id,
                details={"category": category, "retry_after": state.retry_after, "limit": state.limit},
            )
        ).encode()
        return GateDecision(state.headers(), body)


def client_ip(scope: Scope, trusted_proxies: set[str]) -> str:
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if peer in trusted_proxies:
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":
                return str(value.decode("latin-1").split(",")[0].strip())
    return str(peer)


__all__: Any = ["GateDecision", "RateLimitGate", "RateLimiter", "categorise", "client_ip"]
