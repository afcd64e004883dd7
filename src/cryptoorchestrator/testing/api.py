"""Helpers for API tests through an httpx ASGI client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

DEFAULT_PASSWORD = "plenty-long-passphrase-42"


@dataclass
class ApiUser:
    """A registered user and the headers that authenticate as them."""

    id: int
    username: str
    email: str
    access_token: str
    refresh_token: str
    password: str = DEFAULT_PASSWORD
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def register_user(
    client: httpx.AsyncClient, username: str, *, password: str = DEFAULT_PASSWORD, email: str | None = None
) -> ApiUser:
    email = email or f"{username}@example.com"
    response = await client.post(
        "/api/v1/auth/register", json={"username": username, "email": email, "password": password}
    )
    if response.status_code != 201:
        raise AssertionError(f"register {username} failed: {response.status_code} {response.text}")
    body = response.json()
    return ApiUser(
        id=body["user"]["id"],
        username=username,
        email=email,
        access_token=body["access_token"],
        refresh_token=body["refresh_token"],
        password=password,
    )


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the contract's error envelope with this status and code."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["code"] == code, error
    assert error["status_code"] == status
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return dict(error)
