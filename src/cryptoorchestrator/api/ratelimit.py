"""Rate limits: sliding-window counters, in this process by default (``SlidingWindows``) or in
Redis through the ``limits`` library when ``CO_REDIS_URL`` is set (shared by every process).

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage, Storage
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


@dataclass(slots=True)  # not frozen: a frozen dataclass costs 1 µs more to build, on every request
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


class _Window:
    __slots__ = ("current", "expiry", "index", "previous")

    def __init__(self, index: int, expiry: int) -> None:
        self.index = index
        self.expiry = expiry
        self.previous = 0
        self.current = 0


def _previous_ttl(now: float, expiry: int) -> float:
    """How much of the previous fixed window the sliding window still covers, in seconds."""
    return (1 - (((now - expiry) / expiry) % 1)) * expiry


def _weighted(window: _Window, previous_ttl: float) -> float:
    return window.previous * previous_ttl / window.expiry + window.current


class SlidingWindows:
    """In-process rate-limit counters (the default, memory storage): the ``limits`` library's
    sliding-window-counter algorithm - the previous fixed window's count weighted by how much of
    it still overlaps the sliding window, plus the current window's count - on a plain dict.

    ``limits``' async memory storage does the same arithmetic but takes an asyncio lock, awaits
    a string of coroutines and schedules an expiry task on every hit: ~25 µs a request where this
    takes ~3. One event loop needs none of that. Windows are aligned like ``limits``' (multiples
    of the period since the epoch) and the arithmetic is the same, float for float, so the answers
    and headers are too (``test_sliding_windows_count_like_the_limits_library``).
    """

    SWEEP_SECONDS = 60.0

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._next_sweep = 0.0

    def _window(self, category: str, key: str, expiry: int, now: float) -> _Window:
        if now >= self._next_sweep:
            self._sweep(now)
        index = int(now // expiry)
        window = self._windows.get((category, key))
        if window is None:
            window = self._windows[(category, key)] = _Window(index, expiry)
        elif window.index != index:
            window.previous = window.current if window.index == index - 1 else 0
            window.current = 0
            window.index = index
        return window

    def _sweep(self, now: float) -> None:
        """Forget windows that no longer count (bounded memory whatever the number of clients)."""
        self._next_sweep = now + self.SWEEP_SECONDS
        stale = [name for name, w in self._windows.items() if w.index < int(now // w.expiry) - 1]
        for name in stale:
            del self._windows[name]

    def hit(self, category: str, key: str, limit: int, expiry: int, cost: int = 1) -> LimitState:
        now = self._clock()
        window = self._window(category, key, expiry, now)
        previous_ttl = _previous_ttl(now, expiry)
        allowed = cost <= limit and math.floor(_weighted(window, previous_ttl)) + cost <= limit
        if allowed:
            window.current += cost
        return self._state(window, previous_ttl, limit, now, allowed)

    def peek(self, category: str, key: str, limit: int, expiry: int, cost: int = 1) -> LimitState:
        now = self._clock()
        window = self._window(category, key, expiry, now)
        previous_ttl = _previous_ttl(now, expiry)
        allowed = _weighted(window, previous_ttl) < limit - cost + 1
        return self._state(window, previous_ttl, limit, now, allowed)

    @staticmethod
    def _state(window: _Window, previous_ttl: float, limit: int, now: float, allowed: bool) -> LimitState:
        # The arithmetic of limits' SlidingWindowCounterRateLimiter.get_window_stats, float for float.
        previous, current, expiry = window.previous, window.current, window.expiry
        reset_in = math.inf
        if previous:
            reset_in = previous_ttl % (expiry / previous)
        if current:
            current_ttl = (1 - ((now / expiry) % 1)) * expiry + expiry
            reset_in = min(reset_in, current_ttl % expiry)
        return LimitState(
            limit=limit,
            remaining=max(0, limit - math.floor(_weighted(window, previous_ttl))),
            reset_time=now if reset_in == math.inf else now + reset_in,
            allowed=allowed,
        )

    def reset(self) -> int:
        count = len(self._windows)
        self._windows.clear()
        return count


class RateLimiter:
    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        self.enabled = settings.rate_limit_enabled
        self._pool: Any = None
        # Memory (the default): counted in this process. Redis (or an explicit ``limits`` storage):
        # through ``limits``, shared by every process.
        self.windows: SlidingWindows | None = None
        if storage is None and settings.redis_url:
            import redis.asyncio

            # redis-py's asyncio client (already a dependency) rather than limits' default, coredis;
            # the pool is ours so that shutdown closes its connections.
            self._pool = redis.asyncio.ConnectionPool.from_url(settings.redis_url)
            storage = RedisStorage(
                _async_uri(settings.redis_url), implementation="redispy", connection_pool=self._pool
            )
        elif storage is None:
            self.windows = SlidingWindows()
        self.storage = storage
        self._strategy = SlidingWindowCounterRateLimiter(storage) if storage is not None else None
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
        self._expiry = {category: item.get_expiry() for category, item in self.items.items()}

    async def hit(self, category: str, key: str) -> LimitState:
        item = self.items[category]
        if self.windows is not None:
            return self.windows.hit(category, key, item.amount, self._expiry[category])
        assert self._strategy is not None
        allowed = await self._strategy.hit(item, category, key)
        return await self._state(item, category, key, allowed)

    async def peek(self, category: str, key: str) -> LimitState:
        item = self.items[category]
        if self.windows is not None:
            return self.windows.peek(category, key, item.amount, self._expiry[category])
        assert self._strategy is not None
        allowed = await self._strategy.test(item, category, key)
        return await self._state(item, category, key, allowed)

    async def _state(self, item: RateLimitItem, category: str, key: str, allowed: bool) -> LimitState:
        assert self._strategy is not None
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
        if self.windows is not None:
            self.windows.reset()
        if self.storage is not None:
            await self.storage.reset()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    async def ping(self) -> bool:
        return True if self.storage is None else bool(await self.storage.check())


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


@dataclass(slots=True)
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

    def _identity(self, scope: Scope, authorization: str | None, api_key: str | None) -> tuple[str, bool]:
        if authorization and authorization[:7].lower() == "bearer ":
            subject = self._tokens.subject(authorization[7:].strip())
            if subject is not None:
                return f"user:{subject}", True
        if api_key:
            parts = api_key.split("_", 2)
            if len(parts) == 3:
                return f"key:{parts[1]}", True
        return f"ip:{client_ip(scope, self._trusted)}", False

    async def decide(
        self,
        scope: Scope,
        request_id: str,
        authorization: str | None,
        api_key: str | None,
    ) -> GateDecision | None:
        """The limit this request counts against and whether it may pass. ``authorization`` and
        ``api_key`` are the request's headers (the middleware reads them once for everyone)."""
        if not self.limiter.enabled:
            return None
        category = categorise(scope["path"], scope["method"])
        if category == "auth":
            key, authenticated = f"ip:{client_ip(scope, self._trusted)}", False
        else:
            key, authenticated = self._identity(scope, authorization, api_key)
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


__all__: Any = ["GateDecision", "RateLimitGate", "RateLimiter", "SlidingWindows", "categorise", "client_ip"]
