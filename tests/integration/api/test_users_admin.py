"""Profile, preferences, administration and the audit log."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from cryptoorchestrator.testing.api import ApiUser, assert_error

pytestmark = pytest.mark.integration


async def test_profile_update(client, alice: ApiUser):
    response = await client.patch(
        "/api/v1/users/me", headers=alice.headers, json={"first_name": "Alice", "lastName": "Liddell"}
    )
    assert response.status_code == 200
    assert response.json()["first_name"] == "Alice"
    assert response.json()["last_name"] == "Liddell"
    me = await client.get("/api/v1/users/me", headers=alice.headers)
    assert me.json()["last_name"] == "Liddell"


@pytest.mark.parametrize("field", [{"role": "admin"}, {"is_active": False}, {"id": 7}])
async def test_profile_cannot_set_role_or_active_flag(client, alice: ApiUser, field):
    response = await client.patch("/api/v1/users/me", headers=alice.headers, json=field)
    assert_error(response, 422, "VALIDATION_ERROR")
    assert (await client.get("/api/v1/users/me", headers=alice.headers)).json()["role"] == "user"


async def test_profile_conflicts(client, alice: ApiUser, bob: ApiUser):
    assert_error(
        await client.patch("/api/v1/users/me", headers=alice.headers, json={"username": "bob"}),
        409,
        "CONFLICT",
    )
    assert_error(
        await client.patch("/api/v1/users/me", headers=alice.headers, json={"email": bob.email}),
        409,
        "CONFLICT",
    )


async def test_password_change_needs_current_password_and_ends_sessions(client, alice: ApiUser):
    missing = await client.patch(
        "/api/v1/users/me", headers=alice.headers, json={"new_password": "brand-new-pass-1"}
    )
    assert_error(missing, 422, "VALIDATION_ERROR")
    weak = await client.patch(
        "/api/v1/users/me",
        headers=alice.headers,
        json={"current_password": alice.password, "new_password": "password123"},
    )
    assert_error(weak, 422, "VALIDATION_ERROR")
    ok = await client.patch(
        "/api/v1/users/me",
        headers=alice.headers,
        json={"current_password": alice.password, "new_password": "brand-new-pass-1"},
    )
    assert ok.status_code == 200
    assert_error(await client.get("/api/v1/auth/me", headers=alice.headers), 401, "SESSION_REVOKED")
    old = await client.post("/api/v1/auth/login", json={"username": "alice", "password": alice.password})
    assert_error(old, 401, "INVALID_CREDENTIALS")
    new = await client.post("/api/v1/auth/login", json={"username": "alice", "password": "brand-new-pass-1"})
    assert new.status_code == 200


async def test_preferences_partial_update(client, alice: ApiUser):
    assert (await client.get("/api/v1/preferences", headers=alice.headers)).json() == {}
    first = await client.put(
        "/api/v1/preferences",
        headers=alice.headers,
        json={"theme": "dark", "notifications": {"email": True, "tradeAlerts": True}},
    )
    assert first.json() == {"theme": "dark", "notifications": {"email": True, "trade_alerts": True}}
    second = await client.put(
        "/api/v1/preferences", headers=alice.headers, json={"notifications": {"trade_alerts": False}}
    )
    assert second.json() == {"theme": "dark", "notifications": {"email": True, "trade_alerts": False}}
    assert (await client.get("/api/v1/preferences", headers=alice.headers)).json() == second.json()


async def test_preferences_validation_loses_nothing(client, alice: ApiUser):
    await client.put("/api/v1/preferences", headers=alice.headers, json={"theme": "dark"})
    assert_error(
        await client.put("/api/v1/preferences", headers=alice.headers, json={"theme": "purple"}),
        422,
        "VALIDATION_ERROR",
    )
    assert_error(
        await client.put("/api/v1/preferences", headers=alice.headers, json={"unknown": 1}),
        422,
        "VALIDATION_ERROR",
    )
    assert (await client.get("/api/v1/preferences", headers=alice.headers)).json() == {"theme": "dark"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/admin/users"), ("GET", "/api/v1/admin/users/1"), ("PATCH", "/api/v1/admin/users/1"),
     ("GET", "/api/v1/admin/audit-log"), ("GET", "/api/v1/health/detailed")],
)  # fmt: skip
async def test_users_get_403_on_admin_routes(client, alice: ApiUser, method, path):
    response = await client.request(method, path, headers=alice.headers, json={"role": "admin"})
    assert_error(response, 403, "ADMIN_ACCESS_REQUIRED")


async def test_admin_lists_and_searches_users(client, admin: ApiUser, alice: ApiUser, bob: ApiUser):
    listing = (await client.get("/api/v1/admin/users?limit=2", headers=admin.headers)).json()
    assert listing["total"] == 3 and len(listing["items"]) == 2 and listing["limit"] == 2
    found = (await client.get("/api/v1/admin/users?search=bob", headers=admin.headers)).json()
    assert [u["username"] for u in found["items"]] == ["bob"]
    assert_error(
        await client.get("/api/v1/admin/users?limit=501", headers=admin.headers), 422, "VALIDATION_ERROR"
    )


async def test_admin_disables_user(client, admin: ApiUser, alice: ApiUser):
    response = await client.patch(
        f"/api/v1/admin/users/{alice.id}", headers=admin.headers, json={"is_active": False}
    )
    assert response.json()["is_active"] is False
    assert_error(await client.get("/api/v1/auth/me", headers=alice.headers), 401, "SESSION_REVOKED")
    login = await client.post("/api/v1/auth/login", json={"username": "alice", "password": alice.password})
    assert_error(login, 403, "ACCOUNT_DISABLED")
    await client.patch(f"/api/v1/admin/users/{alice.id}", headers=admin.headers, json={"is_active": True})
    login = await client.post("/api/v1/auth/login", json={"username": "alice", "password": alice.password})
    assert login.status_code == 200


async def test_admin_changes_roles_but_not_their_own(client, admin: ApiUser, alice: ApiUser):
    promoted = await client.patch(
        f"/api/v1/admin/users/{alice.id}", headers=admin.headers, json={"role": "admin"}
    )
    assert promoted.json()["role"] == "admin"
    assert (await client.get("/api/v1/admin/users", headers=alice.headers)).status_code == 200
    assert_error(
        await client.patch(f"/api/v1/admin/users/{admin.id}", headers=admin.headers, json={"role": "user"}),
        403,
        "FORBIDDEN",
    )
    assert_error(
        await client.patch("/api/v1/admin/users/9999", headers=admin.headers, json={"role": "user"}),
        404,
        "NOT_FOUND",
    )
    assert_error(
        await client.patch(f"/api/v1/admin/users/{alice.id}", headers=admin.headers, json={"role": "god"}),
        422,
        "VALIDATION_ERROR",
    )


async def test_audit_log_records_security_events_without_secrets(client, admin: ApiUser, alice: ApiUser):
    await client.post("/api/v1/auth/login", json={"username": "alice", "password": "wrong-password-x"})
    await client.post("/api/v1/auth/login", json={"username": "alice", "password": alice.password})
    key = (
        await client.post(
            "/api/v1/auth/api-keys", headers=alice.headers, json={"name": "k", "scopes": ["read"]}
        )
    ).json()
    await client.delete(f"/api/v1/auth/api-keys/{key['id']}", headers=alice.headers)
    await client.patch(f"/api/v1/admin/users/{alice.id}", headers=admin.headers, json={"role": "admin"})
    response = await client.get(
        f"/api/v1/admin/audit-log?user_id={alice.id}&limit=500", headers=admin.headers
    )
    events = response.json()["items"]
    kinds = [e["event"] for e in events]
    for expected in (
        "auth.register",
        "auth.login.failure",
        "auth.login.success",
        "auth.api_key.create",
        "auth.api_key.revoke",
        "admin.user.update",
    ):
        assert expected in kinds, kinds
    failure = next(e for e in events if e["event"] == "auth.login.failure")
    assert failure["success"] is False and failure["ip"] and failure["request_id"]
    assert alice.password not in response.text
    assert "wrong-password-x" not in response.text
    assert key["key"] not in response.text
    update = next(e for e in events if e["event"] == "admin.user.update")
    assert update["actor_user_id"] == admin.id and update["target_user_id"] == alice.id


async def test_audit_log_is_append_only_in_the_database(client, alice: ApiUser, container):
    async with container.engine.connect() as connection:
        count = (await connection.execute(text("SELECT count(*) FROM audit_log"))).scalar_one()
        assert count >= 1
    for statement in ("UPDATE audit_log SET event = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"):
            async with container.engine.begin() as connection:
                await connection.execute(text(statement))
    async with container.engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM audit_log"))).scalar_one() == count
