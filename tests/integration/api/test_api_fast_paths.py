"""The request fast paths keep the behaviour they replace: one authentication per request in the
middleware, in-process rate-limit windows, the route table's string pre-test, the access log's
direct line, the session cache's revocation rules, the metrics' exposition."""

from __future__ import annotations

import io
import json
import logging
import random
import time
from datetime import UTC, datetime

import pytest
import structlog
from fastapi import FastAPI
from fastapi.routing import APIRoute
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.routing import Match

from cryptoorchestrator.api.app import FlatRoute, move_docs_routes_last
from cryptoorchestrator.api.ratelimit import SlidingWindows
from cryptoorchestrator.config.logging import EventLogger, configure_logging
from cryptoorchestrator.core.clock import SimClock
from cryptoorchestrator.domain.identity import Role, User
from cryptoorchestrator.services.auth import SessionCache
from cryptoorchestrator.testing.api import ApiUser, assert_error

pytestmark = pytest.mark.integration


# --- authentication once, in the middleware --------------------------------------------------


async def test_bearer_token_is_checked_once_per_request(client, container, alice: ApiUser, monkeypatch):
    calls: list[str] = []
    original = container.auth.authenticate_token

    async def counting(token: str):
        calls.append(token)
        return await original(token)

    monkeypatch.setattr(container.auth, "authenticate_token", counting)
    response = await client.get("/api/v1/auth/me", headers=alice.headers)
    assert response.status_code == 200 and response.json()["id"] == alice.id
    assert calls == [alice.access_token]
    calls.clear()
    assert (await client.get("/api/v1/auth/api-keys", headers=alice.headers)).status_code == 200
    assert calls == [alice.access_token], "SessionDep reads the principal the middleware resolved"


async def test_public_routes_ignore_bad_credentials_and_protected_ones_refuse_them(client):
    garbage = {"Authorization": "Bearer not.a.token"}
    for path in ("/health", "/api/v1/health", "/api/health"):
        assert (await client.get(path, headers=garbage)).status_code == 200
    assert_error(await client.get("/api/v1/auth/me", headers=garbage), 401, "UNAUTHORIZED")
    assert_error(await client.get("/api/auth/me", headers=garbage), 401, "UNAUTHORIZED")
    assert_error(await client.get("/api/v1/auth/me"), 401, "UNAUTHORIZED")


async def test_me_answers_the_current_user_after_a_change(client, alice: ApiUser):
    first = await client.get("/api/v1/auth/me", headers=alice.headers)
    assert first.json()["first_name"] is None
    await client.patch("/api/v1/users/me", headers=alice.headers, json={"first_name": "Alice"})
    second = await client.get("/api/v1/auth/me", headers=alice.headers)
    assert second.json()["first_name"] == "Alice"
    assert set(second.json()) == set(first.json())


async def test_revocation_by_another_process_takes_effect_within_the_cache_ttl(
    client, container, alice: ApiUser, clock: SimClock
):
    """Another API process revokes a session in the database; this one notices when its cached
    check is older than ``session_cache_seconds`` (a revocation in this process is immediate:
    see test_logout_ends_the_session)."""
    assert (await client.get("/api/v1/auth/me", headers=alice.headers)).status_code == 200
    claims = container.tokens.decode(alice.access_token, expected_type="access", now=clock.now())
    async with container.uow_factory() as uow:
        await uow.sessions.revoke_session(claims.session_id, now=clock.now(), reason="elsewhere")
        await uow.commit()
    clock.advance(container.settings.session_cache_seconds + 0.01)
    assert_error(await client.get("/api/v1/auth/me", headers=alice.headers), 401, "SESSION_REVOKED")


async def test_disabled_user_is_refused_with_a_cached_session(client, admin: ApiUser, alice: ApiUser):
    assert (await client.get("/api/v1/auth/me", headers=alice.headers)).status_code == 200
    await client.patch(f"/api/v1/admin/users/{alice.id}", headers=admin.headers, json={"is_active": False})
    assert (await client.get("/api/v1/auth/me", headers=alice.headers)).status_code == 401
    assert (await client.get("/api/v1/health", headers=alice.headers)).status_code == 200


async def test_concurrent_requests_of_a_session_share_one_session_check(
    container, alice: ApiUser, monkeypatch
):
    import asyncio

    auth = container.auth
    calls: list[str] = []
    release = asyncio.Event()
    original = auth._load_session_user

    async def slow_lookup(session_id: str, user_id: int):
        calls.append(session_id)
        await release.wait()
        return await original(session_id, user_id)

    async def settle() -> None:  # let every ready task run as far as it can
        for _ in range(20):
            await asyncio.sleep(0)

    monkeypatch.setattr(auth, "_load_session_user", slow_lookup)
    auth.session_cache.invalidate_all()
    first = [asyncio.ensure_future(auth.authenticate_token(alice.access_token)) for _ in range(8)]
    await settle()
    assert len(calls) == 1, "one database check for the eight"
    # A check that began before a revocation is not shared with the requests that come after it.
    auth.session_cache.invalidate_all()
    later = asyncio.ensure_future(auth.authenticate_token(alice.access_token))
    await settle()
    assert len(calls) == 2
    first[0].cancel()  # a caller going away does not cancel the check for the others
    release.set()
    results = await asyncio.gather(*first[1:], later)
    assert {principal.user.id for principal in results} == {alice.id}
    assert first[0].cancelled()


def _user(user_id: int = 1) -> User:
    stamp = datetime.fromtimestamp(1_700_000_000, UTC)
    return User(
        id=user_id, username="u", email="u@example.com", role=Role.USER, is_active=True,
        first_name=None, last_name=None, totp_enabled=False, created_at=stamp, updated_at=stamp,
    )  # fmt: skip


def test_session_cache_does_not_keep_a_lookup_that_raced_a_revocation():
    cache = SessionCache(SimClock(start=1000.0), ttl_seconds=5)
    before = cache.generation
    cache.invalidate_all()  # a logout lands while a lookup is in flight
    principal = cache.put("sid", _user(), generation=before)
    assert principal.user.id == 1 and principal.session_id == "sid"
    assert cache.principal("sid", 1) is None, "the possibly stale answer is not cached"
    cache.put("sid", _user(), generation=cache.generation)
    assert cache.principal("sid", 1) is not None
    assert cache.get("sid", 1) is not None


def test_session_cache_entries_expire():
    clock = SimClock(start=1000.0)
    cache = SessionCache(clock, ttl_seconds=5)
    cache.put("sid", _user())
    clock.advance(4.9)
    assert cache.principal("sid", 1) is not None
    clock.advance(0.2)
    assert cache.principal("sid", 1) is None
    assert SessionCache(clock, ttl_seconds=0).put("sid", _user()).session_id == "sid"


@pytest.mark.parametrize(
    ("now", "uptime"),
    [
        (datetime(2026, 1, 1, tzinfo=UTC), 0.0),
        (datetime(2026, 1, 1, 12, 30, 5, 5, tzinfo=UTC), 12.346),
        (datetime(2026, 6, 30, 23, 59, 59, 999999, tzinfo=UTC), 1234567.891),
    ],
)
def test_health_json_is_what_pydantic_writes(now, uptime):
    from cryptoorchestrator.api.routers.system import health_json
    from cryptoorchestrator.schemas.system import Health

    model = Health(status="healthy", timestamp=now, uptime=uptime, version="1.2.3", environment="tést")
    assert health_json("1.2.3", "tést", now, uptime) == model.__pydantic_serializer__.to_json(model)


async def test_health_answers_a_health_document(client):
    from cryptoorchestrator.schemas.system import Health

    for path in ("/health", "/healthz", "/api/v1/health", "/api/health"):
        response = await client.get(path)
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        health = Health.model_validate_json(response.content)
        assert health.status == "healthy" and health.uptime >= 0 and health.timestamp.tzinfo is not None


# --- rate-limit windows ----------------------------------------------------------------------


async def test_sliding_windows_count_like_the_limits_library(monkeypatch):
    """The in-process windows give the same answers as ``limits``' sliding-window counter on its
    memory storage, hit for hit, through window boundaries (a fake clock drives both)."""
    now = [1_700_000_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    ours = SlidingWindows(clock=lambda: now[0])
    theirs = SlidingWindowCounterRateLimiter(MemoryStorage())
    rng = random.Random(7)
    outcomes: set[bool] = set()
    for spec in ("5/minute", "3/second", "10/15minutes"):
        item = parse(spec)
        for step in range(400):
            now[0] += rng.choice((0.0, 0.05, 0.4, 1.3, 7.0, 31.0, 95.0))
            key = rng.choice(("a", "b"))
            if rng.random() < 0.2:
                mine = ours.peek(spec, key, item.amount, item.get_expiry())
                allowed = await theirs.test(item, spec, key)
            else:
                mine = ours.hit(spec, key, item.amount, item.get_expiry())
                allowed = await theirs.hit(item, spec, key)
            stats = await theirs.get_window_stats(item, spec, key)
            assert mine.allowed == allowed, (spec, step)
            outcomes.add(allowed)
            assert mine.remaining == max(0, stats.remaining), (spec, step)
            assert mine.reset_time == pytest.approx(stats.reset_time, abs=1e-6), (spec, step)
    assert outcomes == {True, False}, "both answers were exercised"


def test_sliding_windows_forget_idle_clients():
    now = [1_000_000.0]
    windows = SlidingWindows(clock=lambda: now[0])
    for client in range(100):
        windows.hit("default", f"ip:{client}", 10, 60)
    now[0] += 3 * 60 + SlidingWindows.SWEEP_SECONDS
    windows.hit("default", "ip:new", 10, 60)
    assert windows.reset() == 1


# --- the route table ---------------------------------------------------------------------------


def _first_match(routes, path: str, method: str, *, plain: bool):
    scope = {"type": "http", "path": path, "root_path": "", "method": method, "path_params": {}}
    for route in routes:
        if plain and isinstance(route, APIRoute):
            match, _ = APIRoute.matches(route, scope)
        else:
            match, _ = route.matches(scope)
        if match is not Match.NONE:
            return route, match
    return None, Match.NONE


def test_flat_routes_match_exactly_like_plain_routes(app):
    """For every route's own path (parameters filled in), with and without a trailing slash and
    with each method, the string pre-test picks the same route, with the same kind of match."""
    routes = app.router.routes
    assert any(isinstance(route, FlatRoute) for route in routes)
    paths = {"/", "/api/v1/", "/api/v1/nothing-here", "/api/v1/auth/me/extra"}
    for route in routes:
        template = getattr(route, "path_format", "")
        filled = template.replace("{", "").replace("}", "")  # {key_id} -> key_id: a value
        paths.update({filled, filled + "/", filled.rstrip("/") + "/x", template})
    for path in sorted(paths):
        for method in ("GET", "POST", "DELETE"):
            assert _first_match(routes, path, method, plain=False) == _first_match(
                routes, path, method, plain=True
            ), (method, path)


async def test_add_flat_keeps_a_routers_own_route_class():
    import httpx
    from fastapi import APIRouter

    from cryptoorchestrator.api.app import add_flat

    class Tagged(APIRoute):
        def get_route_handler(self):
            handler = super().get_route_handler()

            async def tagged(request):
                response = await handler(request)
                response.headers["x-tagged"] = "yes"
                return response

            return tagged

    router = APIRouter(prefix="/things", route_class=Tagged)

    @router.get("/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    app = FastAPI()
    add_flat(app, router, prefix="/api/v1")
    route = app.router.routes[-1]
    assert isinstance(route, Tagged) and isinstance(route, FlatRoute)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/api/v1/things/5")
    assert response.json() == {"id": 5} and response.headers["x-tagged"] == "yes"


def test_docs_routes_move_only_when_no_other_route_takes_their_path():
    app = FastAPI()

    @app.get("/{page}")
    async def page(page: str) -> dict[str, str]:
        return {"page": page}

    pages = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/other")
    before = {path: _first_match(app.router.routes, path, "GET", plain=True) for path in pages}
    move_docs_routes_last(app)
    after = {path: _first_match(app.router.routes, path, "GET", plain=True) for path in pages}
    assert after == before
    order = [getattr(route, "path", "") for route in app.router.routes]
    assert order.index("/docs") < order.index("/{page}"), "/{page} would take /docs"
    assert order[-1] == "/docs/oauth2-redirect", "/{page} cannot take a path with two segments"
    plain = FastAPI()
    move_docs_routes_last(plain)
    assert [getattr(route, "path", "") for route in plain.router.routes] == [
        "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"
    ]  # fmt: skip


async def test_docs_and_metrics_are_still_served(client, alice: ApiUser):
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/openapi.json")).status_code == 200
    await client.get("/api/v1/auth/me", headers=alice.headers)
    text = (await client.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/api/v1/auth/me",status="200"} 1.0' in text
    assert 'http_request_duration_seconds_count{method="GET",route="/api/v1/auth/me"} 1.0' in text
    assert 'http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/api/v1/auth/me"} 1.0' in text
    assert "http_requests_created{" in text
    assert "http_requests_in_progress 1.0" in text, "the /metrics request itself is in flight"


# --- the access log's direct line ------------------------------------------------------------


def test_event_logger_writes_what_structlog_writes():
    configure_logging(level="INFO", json=True)
    stream = io.StringIO()
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_co_handler", False))
    logger = logging.getLogger("tests.fast_access")
    logger.propagate = False  # only the platform's handler listens: the direct path
    direct = logging.StreamHandler(stream)
    direct.setFormatter(handler.formatter)
    direct._co_handler = True  # type: ignore[attr-defined]
    logger.addHandler(direct)
    try:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id="rid-1", user_id=7, api_token="s3cret")
        fields = {"method": "GET", "path": "/x", "route": "/x", "status": 200, "duration_ms": 1.5}
        EventLogger("tests.fast_access").info("request", dict(fields))
        structlog.get_logger("tests.fast_access").info("request", **fields)
    finally:
        structlog.contextvars.clear_contextvars()
        logger.removeHandler(direct)
        logger.propagate = True
    fast, slow = (json.loads(line) for line in stream.getvalue().splitlines())
    assert fast.pop("timestamp").endswith("Z") and slow.pop("timestamp").endswith("Z")
    assert fast == slow
    assert list(fast) == list(slow), "same keys in the same order"
    assert fast["request_id"] == "rid-1" and fast["user_id"] == 7 and fast["api_token"] == "***"
