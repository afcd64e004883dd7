"""Rate limits: headers on every response, 429 with Retry-After, per-IP and per-account auth limits."""

from __future__ import annotations

import time

import pytest

from cryptoorchestrator.testing.api import ApiUser, assert_error, register_user
from tests.conftest import client_for

pytestmark = pytest.mark.integration

HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


async def test_headers_on_every_kind_of_response(client, alice: ApiUser):
    responses = [
        await client.get("/health"),
        await client.get("/api/v1/auth/me", headers=alice.headers),
        await client.get("/api/v1/auth/me"),
        await client.get("/api/v1/nope"),
        await client.post("/api/v1/auth/login", json={}),
    ]
    for response in responses:
        for header in HEADERS:
            assert header in response.headers, (response.request.url, response.status_code)
        assert int(response.headers["x-ratelimit-reset"]) >= int(time.time())


async def test_429_with_retry_after(app_factory):
    app, _ = await app_factory(rate_limit_anonymous="3/minute")
    async with client_for(app) as client:
        remaining = [int((await client.get("/health")).headers["x-ratelimit-remaining"]) for _ in range(3)]
        assert remaining == [2, 1, 0]
        blocked = await client.get("/health")
        error = assert_error(blocked, 429, "RATE_LIMIT_EXCEEDED")
        assert 1 <= int(blocked.headers["retry-after"]) <= 60
        assert blocked.headers["x-ratelimit-remaining"] == "0"
        assert error["details"]["category"] == "anonymous"


async def test_authenticated_users_are_limited_separately(app_factory):
    app, _ = await app_factory(rate_limit_default="2/minute")
    async with client_for(app) as client:
        a = await register_user(client, "alice")
        b = await register_user(client, "bobby")
        for _ in range(2):
            assert (await client.get("/api/v1/auth/me", headers=a.headers)).status_code == 200
        assert_error(await client.get("/api/v1/auth/me", headers=a.headers), 429, "RATE_LIMIT_EXCEEDED")
        assert (await client.get("/api/v1/auth/me", headers=b.headers)).status_code == 200


async def test_register_is_limited_per_ip(app_factory):
    app, _ = await app_factory(rate_limit_auth="2/minute")
    async with client_for(app) as client:
        await register_user(client, "user1")
        await register_user(client, "user2")
        response = await client.post(
            "/api/v1/auth/register",
            json={"username": "user3", "email": "u3@example.com", "password": "long-enough-pw"},
        )
        assert_error(response, 429, "RATE_LIMIT_EXCEEDED")
        assert response.headers["x-ratelimit-limit"] == "2"


async def test_login_failures_are_limited_per_account(app_factory):
    app, _ = await app_factory(rate_limit_auth_account="3/15minutes")
    async with client_for(app) as client:
        victim = await register_user(client, "victim")
        other = await register_user(client, "other")
        for _ in range(3):
            wrong = await client.post(
                "/api/v1/auth/login", json={"username": "victim", "password": "guess-guess-1"}
            )
            assert_error(wrong, 401, "INVALID_CREDENTIALS")
        # Even the right password waits now: the account is under attack.
        locked = await client.post(
            "/api/v1/auth/login", json={"username": "victim", "password": victim.password}
        )
        assert_error(locked, 429, "RATE_LIMIT_EXCEEDED")
        assert int(locked.headers["retry-after"]) > 0
        # Other accounts are unaffected.
        fine = await client.post("/api/v1/auth/login", json={"username": "other", "password": other.password})
        assert fine.status_code == 200


async def test_login_is_limited_per_ip(app_factory):
    app, _ = await app_factory(rate_limit_auth="2/minute")
    async with client_for(app) as client:
        for _ in range(2):
            await client.post("/api/v1/auth/login", json={"username": "x", "password": "y"})
        assert_error(
            await client.post("/api/v1/auth/login", json={"username": "x", "password": "y"}),
            429,
            "RATE_LIMIT_EXCEEDED",
        )


async def test_rate_limited_categories():
    from cryptoorchestrator.api.ratelimit import categorise

    assert categorise("/api/v1/auth/login", "POST") == "auth"
    assert categorise("/api/auth/register", "POST") == "auth"
    assert categorise("/api/v1/auth/me", "GET") is None
    assert categorise("/api/v1/market/klines/BTCUSDT", "GET") == "market"
    assert categorise("/api/v1/orders", "POST") == "trading"
    assert categorise("/api/v1/backtests", "POST") == "backtests"
    assert categorise("/api/v1/backtests/5", "GET") is None  # polling progress is not throttled
    assert categorise("/api/v1/ml/models", "POST") == "ml"
    assert categorise("/health", "GET") is None
