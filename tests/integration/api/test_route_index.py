"""The app router's index (``api.app.RouteIndex``): every route is reached exactly as FastAPI's
own table scan reaches it, and what no route takes still gets FastAPI's answer."""

from __future__ import annotations

import re
from typing import Any

import httpx
from starlette.routing import Match

from cryptoorchestrator.api.app import RouteIndex, _bucket


def _sample_path(path_format: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path_format)


def _scope(path: str, method: str) -> dict[str, Any]:
    return {
        "type": "http", "path": path, "root_path": "", "method": method, "headers": [], "query_string": b"",
    }  # fmt: skip


def _first_full(routes: list[Any], scope: dict[str, Any]) -> Any:
    for route in routes:
        if route.matches(scope)[0] is Match.FULL:
            return route
    return None


def test_the_index_is_installed_and_finds_what_the_table_scan_finds(app: Any) -> None:
    router = app.router
    index = router.middleware_stack
    assert isinstance(index, RouteIndex)
    checked = 0
    for route in router.routes:
        path_format = getattr(route, "path_format", None)
        if path_format is None:
            continue
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            for path in (_sample_path(path_format), _sample_path(path_format) + "/more"):
                scope = _scope(path, method)
                assert _first_full(index.candidates(path), scope) is _first_full(router.routes, scope), path
                checked += 1
    assert checked > 100
    assert _bucket("/api/v1/orders/42/fills") == "/api/v1/orders"
    assert _bucket("/health") == "/health"


async def test_unmatched_requests_get_fastapis_own_answers(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/no-such-thing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"
    wrong_method = await client.delete("/api/v1/health")
    assert wrong_method.status_code == 405
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/api/v1/health")).status_code == 200
