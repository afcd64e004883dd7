"""/strategies: catalog, validation, saved strategies (CRUD) and ownership."""

from __future__ import annotations

import pytest

from cryptoorchestrator.testing.api import ApiUser, assert_error
from cryptoorchestrator.testing.ownership import OwnedRoute, assert_owner_only

pytestmark = pytest.mark.integration

RULES = {
    "entry": {"all": [{"indicator": "rsi", "period": 14, "op": "<", "value": 30}]},
    "exit": {"any": [{"indicator": "rsi", "period": 14, "op": ">", "value": 70}]},
}


async def test_catalog_lists_builtins_with_schemas(client, alice: ApiUser):
    body = (await client.get("/api/v1/strategies/types", headers=alice.headers)).json()
    names = {item["name"] for item in body["items"]}
    assert {
        "sma_cross",
        "ema_cross",
        "rsi_momentum",
        "bollinger_reversion",
        "macd_cross",
        "donchian_breakout",
        "grid",
        "dca",
        "rules",
    } <= names
    sma = next(item for item in body["items"] if item["name"] == "sma_cross")
    assert sma["parameters_schema"]["type"] == "object"
    assert "fast" in sma["parameters_schema"]["properties"]
    assert sma["defaults"]["fast"] < sma["defaults"]["slow"]


async def test_validate(client, alice: ApiUser):
    ok = await client.post(
        "/api/v1/strategies/validate",
        headers=alice.headers,
        json={"type": "sma_cross", "params": {"fast": 5}},
    )
    assert ok.status_code == 200
    assert ok.json()["valid"] is True and ok.json()["params"]["fast"] == 5
    bad = await client.post(
        "/api/v1/strategies/validate",
        headers=alice.headers,
        json={"strategy_type": "sma_cross", "params": {"fast": 50, "slow": 10}},
    )
    error = assert_error(bad, 422, "VALIDATION_ERROR")
    assert any("slow" in e["loc"] or "fast" in e["loc"] for e in error["details"]["errors"])
    out_of_bounds = await client.post(
        "/api/v1/strategies/validate",
        headers=alice.headers,
        json={"type": "sma_cross", "params": {"fast": -3}},
    )
    assert_error(out_of_bounds, 422, "VALIDATION_ERROR")
    unknown = await client.post("/api/v1/strategies/validate", headers=alice.headers, json={"type": "nope"})
    assert_error(unknown, 404, "STRATEGY_NOT_FOUND")


async def test_rules_strategy_without_code(client, alice: ApiUser):
    created = await client.post(
        "/api/v1/strategies",
        headers=alice.headers,
        json={"name": "rsi rules", "type": "rules", "params": RULES},
    )
    assert created.status_code == 201, created.text
    broken = await client.post(
        "/api/v1/strategies",
        headers=alice.headers,
        json={"name": "broken", "type": "rules", "params": {"entry": {"all": [{"indicator": "nope"}]}}},
    )
    error = assert_error(broken, 422, "VALIDATION_ERROR")
    assert error["details"]["errors"]
    assert (await client.get("/api/v1/strategies", headers=alice.headers)).json()["total"] == 1


async def test_crud(client, alice: ApiUser):
    created = await client.post(
        "/api/v1/strategies",
        headers=alice.headers,
        json={"name": "fast cross", "strategy_type": "sma_cross", "params": {"fast": 5, "slow": 20}},
    )
    assert created.status_code == 201
    strategy = created.json()
    duplicate = await client.post(
        "/api/v1/strategies", headers=alice.headers, json={"name": "fast cross", "type": "sma_cross"}
    )
    assert_error(duplicate, 409, "CONFLICT")
    patched = await client.patch(
        f"/api/v1/strategies/{strategy['id']}", headers=alice.headers, json={"params": {"fast": 7}}
    )
    assert patched.json()["params"]["fast"] == 7 and patched.json()["params"]["slow"] == 20
    replaced = await client.put(
        f"/api/v1/strategies/{strategy['id']}", headers=alice.headers, json={"params": {"fast": 3}}
    )
    assert replaced.json()["params"]["slow"] != 20 or replaced.json()["params"]["fast"] == 3
    invalid = await client.patch(
        f"/api/v1/strategies/{strategy['id']}", headers=alice.headers, json={"params": {"fast": 500}}
    )
    assert_error(invalid, 422, "VALIDATION_ERROR")
    kept = (await client.get(f"/api/v1/strategies/{strategy['id']}", headers=alice.headers)).json()
    assert kept["params"]["fast"] == 3, "a refused update loses nothing"
    deleted = await client.delete(f"/api/v1/strategies/{strategy['id']}", headers=alice.headers)
    assert deleted.status_code == 204
    assert_error(
        await client.get(f"/api/v1/strategies/{strategy['id']}", headers=alice.headers),
        404,
        "STRATEGY_NOT_FOUND",
    )


async def test_strategies_are_owner_only(client, alice: ApiUser, bob: ApiUser):
    created = (
        await client.post(
            "/api/v1/strategies", headers=alice.headers, json={"name": "mine", "type": "ema_cross"}
        )
    ).json()
    await assert_owner_only(
        client,
        owner_headers=alice.headers,
        intruder_headers=bob.headers,
        object_id=created["id"],
        missing_id="00000000-0000-0000-0000-000000000000",
        routes=[
            OwnedRoute("GET", "/api/v1/strategies/{id}"),
            OwnedRoute("PUT", "/api/v1/strategies/{id}", json={"name": "stolen"}),
            OwnedRoute("PATCH", "/api/v1/strategies/{id}", json={"params": {"fast": 2}}),
            OwnedRoute("DELETE", "/api/v1/strategies/{id}"),
        ],
        check=OwnedRoute("GET", "/api/v1/strategies/{id}"),
        not_found_code="STRATEGY_NOT_FOUND",
    )
    assert (await client.get("/api/v1/strategies", headers=bob.headers)).json()["total"] == 0
