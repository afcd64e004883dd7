"""Rate limits stored in a real Redis: shared by every API process (CO_TEST_REDIS_URL)."""

from __future__ import annotations

import pytest

from cryptoorchestrator.testing.api import assert_error
from tests.conftest import REDIS_URL, client_for

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(not REDIS_URL, reason="CO_TEST_REDIS_URL is not set: no Redis to test against"),
]


async def test_two_processes_share_one_budget(app_factory):
    first, _ = await app_factory(redis_url=REDIS_URL, rate_limit_anonymous="4/minute")
    second, _ = await app_factory(redis_url=REDIS_URL, rate_limit_anonymous="4/minute")
    await first.state.limiter.reset()
    async with client_for(first) as a, client_for(second) as b:
        seen = []
        for client in (a, b, a, b):
            response = await client.get("/health")
            assert response.status_code == 200
            seen.append(int(response.headers["x-ratelimit-remaining"]))
        assert seen == [3, 2, 1, 0]
        blocked = await b.get("/health")
        assert_error(blocked, 429, "RATE_LIMIT_EXCEEDED")
        assert int(blocked.headers["retry-after"]) >= 1
    await first.state.limiter.reset()


async def test_detailed_health_reports_redis(app_factory, admin):
    app, container = await app_factory(redis_url=REDIS_URL)
    await app.state.limiter.reset()
    from cryptoorchestrator.domain.identity import RequestMeta, Role

    pair = await container.auth.register(
        email="ops@example.com",
        password="ops-passphrase-1",
        username="ops",
        role=Role.ADMIN,
        meta=RequestMeta(),
    )
    async with client_for(app) as client:
        response = await client.get(
            "/api/v1/health/detailed", headers={"Authorization": f"Bearer {pair.access_token}"}
        )
        services = {s["service"]: s for s in response.json()["services"]}
        assert services["redis"]["status"] == "healthy"
        status = (await client.get("/api/v1/status")).json()
        assert status["rate_limit_storage"] == "redis"
    await app.state.limiter.reset()
