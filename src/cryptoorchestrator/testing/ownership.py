"""The ownership check every feature registers its routes with.

User B must get ``404 NOT_FOUND`` on each of user A's object ids, for read, update, delete and
actions, exactly as for an id that does not exist; and A's object must be intact afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from cryptoorchestrator.testing.api import assert_error


@dataclass(frozen=True, slots=True)
class OwnedRoute:
    """One route over an owned object; ``{id}`` in ``path`` is replaced by the object id."""

    method: str
    path: str
    json: dict[str, Any] | None = None

    def url(self, object_id: Any) -> str:
        return self.path.replace("{id}", str(object_id))


async def assert_owner_only(
    client: httpx.AsyncClient,
    *,
    owner_headers: dict[str, str],
    intruder_headers: dict[str, str],
    object_id: Any,
    missing_id: Any,
    routes: Sequence[OwnedRoute],
    check: OwnedRoute,
    not_found_code: str = "NOT_FOUND",
) -> None:
    """Every route answers the intruder 404 for ``object_id`` (same as for ``missing_id``), and
    ``check`` still answers the owner 200 afterwards (nothing was changed or lost)."""
    if not routes:
        raise ValueError("give at least one route to check")
    before = await client.request(check.method, check.url(object_id), headers=owner_headers, json=check.json)
    assert before.status_code == 200, f"owner cannot read {check.url(object_id)}: {before.text}"
    for route in routes:
        foreign = await client.request(
            route.method, route.url(object_id), headers=intruder_headers, json=route.json
        )
        assert_error(foreign, 404, not_found_code)
        missing = await client.request(
            route.method, route.url(missing_id), headers=intruder_headers, json=route.json
        )
        assert_error(missing, 404, not_found_code)
        assert foreign.json()["error"]["message"] == missing.json()["error"]["message"], (
            "another user's id must be indistinguishable from a missing one"
        )
    after = await client.request(check.method, check.url(object_id), headers=owner_headers, json=check.json)
    assert after.status_code == 200, f"owner lost {check.url(object_id)}: {after.text}"
    assert after.json() == before.json(), "the intruder's requests changed the owner's object"
