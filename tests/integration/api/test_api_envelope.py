"""The API conventions: error envelope, request ids, /api alias, health, status, metrics."""

from __future__ import annotations

import logging

import httpx
import pytest

from cryptoorchestrator.testing.api import ApiUser, assert_error, register_user

pytestmark = pytest.mark.integration


async def test_unknown_route_is_404_envelope(client):
    response = await client.get("/api/v1/does-not-exist")
    error = assert_error(response, 404, "NOT_FOUND")
    assert "/api/v1/does-not-exist" in error["message"]


async def test_wrong_method_is_405_envelope(client):
    response = await client.delete("/api/v1/auth/me")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")


async def test_validation_error_lists_details(client):
    response = await client.post("/api/v1/auth/register", json={"email": "not-an-email", "password": 5})
    error = assert_error(response, 422, "VALIDATION_ERROR")
    fields = {tuple(e["loc"]) for e in error["details"]["errors"]}
    assert ("body", "email") in fields
    assert ("body", "password") in fields
    assert all({"loc", "msg", "type"} == set(e) for e in error["details"]["errors"])


async def test_malformed_json_is_422_not_500(client):
    response = await client.post(
        "/api/v1/auth/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_unexpected_exception_is_500_without_traceback(app, client, caplog):
    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    app.add_api_route("/api/v1/boom", boom)
    with caplog.at_level(logging.ERROR):
        response = await client.get("/api/v1/boom")
    error = assert_error(response, 500, "INTERNAL_ERROR")
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    logged = [r for r in caplog.records if r.exc_info]
    assert logged, "the traceback must be logged"
    assert "secret internal detail" in str(logged[-1].exc_info[1])
    assert error["request_id"]


@pytest.mark.parametrize(("path", "status"), [("/api/v1/orders", "499"), ("/api/v1/auth/login", "400")])
async def test_a_client_gone_before_its_body_arrived_is_no_error(app, client, caplog, path, status):
    """The fast order path and FastAPI's own both read the body; a client that disconnects
    meanwhile is nobody to answer: no 500, no traceback logged. The order path counts it as 499
    (FastAPI answers its own body errors with 400)."""
    user = await _user(client)
    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", user.headers["Authorization"].encode()),
    ]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": headers, "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }  # fmt: skip
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    with caplog.at_level(logging.INFO):
        await app(scope, receive, send)
    assert not [m for m in sent if m.get("status") == 500]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    metrics = (await client.get("/metrics")).text
    assert f'route="{path}",status="{status}"' in metrics


async def _user(client: httpx.AsyncClient) -> ApiUser:
    return await register_user(client, "gone")


async def test_request_id_is_echoed_or_generated(client):
    echoed = await client.get("/health", headers={"X-Request-ID": "trace-abc.123"})
    assert echoed.headers["x-request-id"] == "trace-abc.123"
    replaced = await client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert replaced.headers["x-request-id"] != "bad id with spaces"
    assert len(replaced.headers["x-request-id"]) == 32


async def test_health_routes(client):
    for path in ("/health", "/healthz", "/api/v1/health", "/api/health"):
        response = await client.get(path)
        assert response.status_code == 200, path
        body = response.json()
        assert body["status"] == "healthy"
        assert body["timestamp"].endswith("Z")
        assert body["version"]


async def test_status(client):
    response = await client.get("/api/v1/status")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "operational"
    assert body["api_versions"] == ["v1"]
    assert body["rate_limit_storage"] == "memory"


async def test_api_alias_answers_the_same_routes(client, alice: ApiUser):
    v1 = await client.get("/api/v1/auth/me", headers=alice.headers)
    alias = await client.get("/api/auth/me", headers=alice.headers)
    assert v1.status_code == alias.status_code == 200
    assert v1.json() == alias.json()


async def test_detailed_health_needs_admin(client, alice: ApiUser, admin: ApiUser):
    assert_error(await client.get("/api/v1/health/detailed"), 401, "UNAUTHORIZED")
    assert_error(
        await client.get("/api/v1/health/detailed", headers=alice.headers), 403, "ADMIN_ACCESS_REQUIRED"
    )
    response = await client.get("/api/v1/health/detailed", headers=admin.headers)
    assert response.status_code == 200
    body = response.json()
    services = {s["service"]: s for s in body["services"]}
    assert services["database"]["status"] == "healthy"
    assert services["redis"]["status"] == "disabled"
    assert services["disk"]["details"]["free_bytes"] > 0
    assert "sqlalchemy" in body["versions"]


async def test_metrics_count_requests_by_route(client, alice: ApiUser):
    await client.get("/api/v1/auth/me", headers=alice.headers)
    await client.get("/api/v1/nowhere")
    text = (await client.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/api/v1/auth/me",status="200"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "http_request_duration_seconds_bucket" in text
    assert "http_requests_in_progress" in text


async def test_openapi_and_docs_are_served(client):
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/auth/login" in spec["paths"]
    assert "/api/auth/login" not in spec["paths"], "the alias stays out of the schema"
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/redoc")).status_code == 200


async def test_access_log_carries_request_and_user_ids(app_factory, caplog):
    import logging

    from cryptoorchestrator.testing.api import register_user
    from tests.conftest import client_for

    app, _ = await app_factory(log_level="INFO")
    async with client_for(app) as http:
        user = await register_user(http, "logged")
        with caplog.at_level(logging.INFO, logger="cryptoorchestrator.access"):
            response = await http.get("/api/v1/auth/me", headers=user.headers)
    events = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "request"]
    assert events, "one access-log event per request"
    event = events[-1]
    assert event["request_id"] == response.headers["x-request-id"]
    assert event["user_id"] == user.id
    assert event["route"] == "/api/v1/auth/me" and event["status"] == 200
    assert user.access_token not in str(caplog.records), "tokens are never logged"
