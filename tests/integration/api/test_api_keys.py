"""API keys: shown once, stored hashed, scopes enforced, revocable, owner-only."""

from __future__ import annotations

import hashlib

import pytest

from cryptoorchestrator.testing.api import ApiUser, assert_error
from cryptoorchestrator.testing.ownership import OwnedRoute, assert_owner_only

pytestmark = pytest.mark.integration


async def create_key(client, user: ApiUser, scopes: list[str], name: str = "bot") -> dict:
    response = await client.post(
        "/api/v1/auth/api-keys", headers=user.headers, json={"name": name, "scopes": scopes}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_key_is_shown_once_and_stored_hashed(client, alice: ApiUser, container):
    created = await create_key(client, alice, ["read"])
    assert created["key"].startswith("co_")
    assert created["scopes"] == ["read"]
    listing = await client.get("/api/v1/auth/api-keys", headers=alice.headers)
    body = listing.json()
    assert body["total"] == 1 and body["limit"] == 50 and body["offset"] == 0
    assert "key" not in body["items"][0]
    assert created["key"] not in listing.text
    async with container.uow_factory() as uow:
        stored = await uow.api_keys.find_by_prefix(created["prefix"])
    assert stored.digest == hashlib.sha256(created["key"].encode()).hexdigest()


async def test_read_key_reads_but_cannot_change_anything(client, alice: ApiUser):
    key = (await create_key(client, alice, ["read"]))["key"]
    headers = {"X-API-Key": key}
    me = await client.get("/api/v1/auth/me", headers=headers)
    assert me.status_code == 200 and me.json()["id"] == alice.id
    error = assert_error(
        await client.put("/api/v1/preferences", headers=headers, json={"theme": "dark"}), 403, "FORBIDDEN"
    )
    assert error["details"]["required_scope"] == "trade"


async def test_trade_key_can_change_state(client, alice: ApiUser):
    key = (await create_key(client, alice, ["trade"]))["key"]
    response = await client.put("/api/v1/preferences", headers={"X-API-Key": key}, json={"theme": "dark"})
    assert response.status_code == 200
    assert_error(await client.get("/api/v1/preferences", headers={"X-API-Key": key}), 403, "FORBIDDEN")


async def test_keys_cannot_manage_keys_or_security(client, alice: ApiUser):
    key = (await create_key(client, alice, ["read", "trade"]))["key"]
    headers = {"X-API-Key": key}
    assert_error(
        await client.post("/api/v1/auth/api-keys", headers=headers, json={"name": "x", "scopes": ["read"]}),
        403,
        "FORBIDDEN",
    )
    assert_error(await client.get("/api/v1/auth/api-keys", headers=headers), 403, "FORBIDDEN")
    assert_error(
        await client.post("/api/v1/auth/2fa/setup", headers=headers, json={"password": alice.password}),
        403,
        "FORBIDDEN",
    )


async def test_last_used_is_recorded(client, alice: ApiUser):
    created = await create_key(client, alice, ["read"])
    assert created["last_used_at"] is None
    await client.get("/api/v1/auth/me", headers={"X-API-Key": created["key"]})
    fetched = await client.get(f"/api/v1/auth/api-keys/{created['id']}", headers=alice.headers)
    assert fetched.json()["last_used_at"].endswith("Z")


async def test_revoked_key_stops_working(client, alice: ApiUser):
    created = await create_key(client, alice, ["read"])
    response = await client.delete(f"/api/v1/auth/api-keys/{created['id']}", headers=alice.headers)
    assert response.status_code == 204
    assert_error(
        await client.get("/api/v1/auth/me", headers={"X-API-Key": created["key"]}), 401, "UNAUTHORIZED"
    )
    assert (await client.get("/api/v1/auth/api-keys", headers=alice.headers)).json()["total"] == 0


async def test_bad_keys(client, alice: ApiUser):
    created = await create_key(client, alice, ["read"])
    for bad in ("nonsense", "co_000000000000_x", created["key"][:-1] + "?"):
        assert_error(await client.get("/api/v1/auth/me", headers={"X-API-Key": bad}), 401, "UNAUTHORIZED")


async def test_expired_key(client, alice: ApiUser, clock):
    expires = clock.now().replace(microsecond=0).isoformat().replace("+00:00", "Z")
    past = await client.post(
        "/api/v1/auth/api-keys",
        headers=alice.headers,
        json={"name": "x", "scopes": ["read"], "expires_at": expires},
    )
    assert_error(past, 422, "VALIDATION_ERROR")
    clock.advance(0)
    future = clock.now().timestamp() + 60
    from datetime import UTC, datetime

    iso = datetime.fromtimestamp(future, UTC).isoformat()
    created = await client.post(
        "/api/v1/auth/api-keys",
        headers=alice.headers,
        json={"name": "x", "scopes": ["read"], "expires_at": iso},
    )
    key = created.json()["key"]
    assert (await client.get("/api/v1/auth/me", headers={"X-API-Key": key})).status_code == 200
    clock.advance(120)
    assert_error(await client.get("/api/v1/auth/me", headers={"X-API-Key": key}), 401, "TOKEN_EXPIRED")


async def test_invalid_scope_is_422(client, alice: ApiUser):
    response = await client.post(
        "/api/v1/auth/api-keys", headers=alice.headers, json={"name": "x", "scopes": ["withdraw"]}
    )
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_api_keys_are_owner_only(client, alice: ApiUser, bob: ApiUser):
    created = await create_key(client, alice, ["read"])
    await assert_owner_only(
        client,
        owner_headers=alice.headers,
        intruder_headers=bob.headers,
        object_id=created["id"],
        missing_id=999999,
        routes=[
            OwnedRoute("GET", "/api/v1/auth/api-keys/{id}"),
            OwnedRoute("DELETE", "/api/v1/auth/api-keys/{id}"),
        ],
        check=OwnedRoute("GET", "/api/v1/auth/api-keys/{id}"),
    )
    # Still usable by its owner.
    assert (await client.get("/api/v1/auth/me", headers={"X-API-Key": created["key"]})).status_code == 200
    assert (await client.get("/api/v1/auth/api-keys", headers=bob.headers)).json()["total"] == 0
