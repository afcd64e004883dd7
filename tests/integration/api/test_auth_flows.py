"""Every auth flow through the HTTP API: register, login, tokens, refresh rotation, logout, 2FA."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from cryptoorchestrator.security import totp
from cryptoorchestrator.testing.api import ApiUser, assert_error, register_user

pytestmark = pytest.mark.integration


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- registration ----------------------------------------------------------------------


async def test_register_returns_tokens_and_user(client):
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "username": "carol",
            "email": "Carol@Example.com",
            "password": "a-strong-passphrase",
            "firstName": "Carol",
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 1800
    assert body["user"]["email"] == "carol@example.com"
    assert body["user"]["first_name"] == "Carol"
    assert body["user"]["role"] == "user"
    assert "password" not in response.text and "password_hash" not in response.text
    me = await client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.json()["username"] == "carol"


async def test_register_derives_username_from_email(client):
    response = await client.post(
        "/api/v1/auth/register", json={"email": "dave.smith@example.com", "password": "another-fine-pass"}
    )
    assert response.status_code == 201
    assert response.json()["user"]["username"] == "dave.smith"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"username": "ab", "email": "x@example.com", "password": "long-enough-pass"}, "username"),
        ({"username": "x" * 33, "email": "x@example.com", "password": "long-enough-pass"}, "username"),
        ({"username": "bad name!", "email": "x@example.com", "password": "long-enough-pass"}, "username"),
        ({"username": "eve", "email": "not-an-email", "password": "long-enough-pass"}, "email"),
        ({"username": "eve", "email": "x@example.com", "password": "short"}, "password"),
        ({"username": "eve", "email": "x@example.com", "password": "qwertyuiop"}, "password"),
        ({"username": "eve", "email": "x@example.com", "password": "1234567890"}, "password"),
        (
            {"username": "eve", "email": "x@example.com", "password": "long-enough-pass", "role": "admin"},
            "role",
        ),
    ],
)
async def test_register_rejects_bad_input(client, payload, field):
    response = await client.post("/api/v1/auth/register", json=payload)
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert any(e["loc"][-1] == field for e in error["details"]["errors"]), error


async def test_register_duplicate_username_or_email_is_conflict(client, alice: ApiUser):
    same_name = await client.post(
        "/api/v1/auth/register",
        json={"username": "ALICE", "email": "new@example.com", "password": "long-enough-pass"},
    )
    assert_error(same_name, 409, "CONFLICT")
    same_email = await client.post(
        "/api/v1/auth/register",
        json={"username": "alice2", "email": "Alice@example.com", "password": "long-enough-pass"},
    )
    assert_error(same_email, 409, "CONFLICT")


# --- login ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["username", "email", "login"])
async def test_login_by_username_or_email(client, alice: ApiUser, field):
    login = alice.email if field == "email" else alice.username
    response = await client.post("/api/v1/auth/login", json={field: login, "password": alice.password})
    assert response.status_code == 200
    body = response.json()
    assert body["user"]["id"] == alice.id
    assert body["user"]["last_login_at"].endswith("Z")


async def test_login_failures_are_uniform(client, alice: ApiUser):
    wrong = await client.post("/api/v1/auth/login", json={"username": "alice", "password": "wrong-password!"})
    unknown = await client.post(
        "/api/v1/auth/login", json={"username": "nobody", "password": "wrong-password!"}
    )
    assert_error(wrong, 401, "INVALID_CREDENTIALS")
    assert_error(unknown, 401, "INVALID_CREDENTIALS")
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]


# --- access tokens ---------------------------------------------------------------------


async def test_missing_and_garbage_tokens(client):
    assert_error(await client.get("/api/v1/auth/me"), 401, "UNAUTHORIZED")
    assert_error(await client.get("/api/v1/auth/me", headers=bearer("garbage")), 401, "UNAUTHORIZED")


async def test_expired_access_token(client, alice: ApiUser, clock):
    clock.advance(31 * 60)
    assert_error(await client.get("/api/v1/auth/me", headers=alice.headers), 401, "TOKEN_EXPIRED")


async def test_tampered_signature_is_rejected(client, alice: ApiUser):
    header, payload, signature = alice.access_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "999"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    forged = f"{header}.{forged_payload}.{signature}"
    assert_error(await client.get("/api/v1/auth/me", headers=bearer(forged)), 401, "UNAUTHORIZED")
    flipped = (
        alice.access_token[:-2] + ("A" if alice.access_token[-2] != "A" else "B") + alice.access_token[-1]
    )
    assert_error(await client.get("/api/v1/auth/me", headers=bearer(flipped)), 401, "UNAUTHORIZED")


async def test_alg_none_token_is_rejected(client, alice: ApiUser):
    claims = jwt.decode(alice.access_token, options={"verify_signature": False})
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    assert_error(await client.get("/api/v1/auth/me", headers=bearer(unsigned)), 401, "UNAUTHORIZED")


async def test_token_signed_with_another_key_is_rejected(client, alice: ApiUser):
    claims = jwt.decode(alice.access_token, options={"verify_signature": False})
    other = jwt.encode(claims, "someone-elses-secret-key-0123456789", algorithm="HS256")
    assert_error(await client.get("/api/v1/auth/me", headers=bearer(other)), 401, "UNAUTHORIZED")


async def test_refresh_token_is_not_an_access_token(client, alice: ApiUser):
    assert_error(
        await client.get("/api/v1/auth/me", headers=bearer(alice.refresh_token)), 401, "UNAUTHORIZED"
    )


# --- refresh rotation and logout ------------------------------------------------------------


async def test_refresh_rotates_tokens(client, alice: ApiUser):
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
    assert response.status_code == 200
    body = response.json()
    assert body["refresh_token"] != alice.refresh_token
    assert (await client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))).status_code == 200
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert again.status_code == 200


async def test_refresh_reuse_revokes_the_whole_family(client, alice: ApiUser, admin: ApiUser):
    first = (await client.post("/api/v1/auth/refresh", json={"refresh_token": alice.refresh_token})).json()
    replay = await client.post("/api/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
    assert_error(replay, 401, "TOKEN_REUSED")
    # The thief's and the victim's newer tokens are dead too.
    assert_error(
        await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}),
        401,
        "SESSION_REVOKED",
    )
    assert_error(
        await client.get("/api/v1/auth/me", headers=bearer(first["access_token"])), 401, "SESSION_REVOKED"
    )
    assert_error(await client.get("/api/v1/auth/me", headers=alice.headers), 401, "SESSION_REVOKED")
    # Other sessions of the same user are untouched.
    fresh = await client.post("/api/v1/auth/login", json={"username": "alice", "password": alice.password})
    assert fresh.status_code == 200
    log = (await client.get("/api/v1/admin/audit-log?event=auth.refresh.reuse", headers=admin.headers)).json()
    assert log["total"] == 1 and log["items"][0]["actor_user_id"] == alice.id


async def test_expired_refresh_token(client, alice: ApiUser, clock):
    clock.advance(7 * 24 * 3600 + 1)
    assert_error(
        await client.post("/api/v1/auth/refresh", json={"refresh_token": alice.refresh_token}),
        401,
        "TOKEN_EXPIRED",
    )


async def test_access_token_cannot_refresh(client, alice: ApiUser):
    assert_error(
        await client.post("/api/v1/auth/refresh", json={"refresh_token": alice.access_token}),
        401,
        "UNAUTHORIZED",
    )


async def test_logout_ends_the_session(client, alice: ApiUser):
    other = (
        await client.post("/api/v1/auth/login", json={"username": "alice", "password": alice.password})
    ).json()
    response = await client.post("/api/v1/auth/logout", headers=alice.headers)
    assert response.status_code == 200
    assert_error(await client.get("/api/v1/auth/me", headers=alice.headers), 401, "SESSION_REVOKED")
    assert_error(
        await client.post("/api/v1/auth/refresh", json={"refresh_token": alice.refresh_token}),
        401,
        "SESSION_REVOKED",
    )
    # Logging out one device leaves the other logged in.
    assert (await client.get("/api/v1/auth/me", headers=bearer(other["access_token"]))).status_code == 200


# --- two-factor authentication --------------------------------------------------------------


async def test_two_factor_lifecycle(client, alice: ApiUser, clock, container):
    wrong = await client.post(
        "/api/v1/auth/2fa/setup", headers=alice.headers, json={"password": "nope-nope-nope"}
    )
    assert_error(wrong, 401, "INVALID_CREDENTIALS")
    setup = await client.post(
        "/api/v1/auth/2fa/setup", headers=alice.headers, json={"password": alice.password}
    )
    assert setup.status_code == 200
    secret = setup.json()["secret"]
    assert setup.json()["otpauth_uri"].startswith("otpauth://totp/")

    # Stored encrypted, never in clear.
    async with container.uow_factory() as uow:
        creds = await uow.users.get_credentials(alice.id)
    assert creds.totp_secret_encrypted and secret not in creds.totp_secret_encrypted
    assert container.secret_box.decrypt(creds.totp_secret_encrypted) == secret

    bad = await client.post("/api/v1/auth/2fa/enable", headers=alice.headers, json={"code": "000000"})
    assert_error(bad, 422, "VALIDATION_ERROR")
    code = totp.current_code(secret, at=clock.now())
    enabled = await client.post("/api/v1/auth/2fa/enable", headers=alice.headers, json={"code": code})
    assert enabled.json() == {"enabled": True}

    no_code = await client.post("/api/v1/auth/login", json={"username": "alice", "password": alice.password})
    assert_error(no_code, 401, "TWO_FACTOR_REQUIRED")
    wrong_code = await client.post(
        "/api/v1/auth/login", json={"username": "alice", "password": alice.password, "totp_code": "123456"}
    )
    assert_error(wrong_code, 401, "INVALID_TOTP_CODE")
    ok = await client.post(
        "/api/v1/auth/login",
        json={
            "username": "alice",
            "password": alice.password,
            "totp_code": totp.current_code(secret, at=clock.now()),
        },
    )
    assert ok.status_code == 200 and ok.json()["user"]["totp_enabled"] is True

    clock.advance(60)
    disable = await client.post(
        "/api/v1/auth/2fa/disable",
        headers=alice.headers,
        json={"code": totp.current_code(secret, at=clock.now()), "password": alice.password},
    )
    assert disable.json() == {"enabled": False}
    plain = await client.post("/api/v1/auth/login", json={"username": "alice", "password": alice.password})
    assert plain.status_code == 200


async def test_two_factor_enable_without_setup_is_conflict(client, alice: ApiUser):
    assert_error(
        await client.post("/api/v1/auth/2fa/enable", headers=alice.headers, json={"code": "123456"}),
        409,
        "CONFLICT",
    )


async def test_second_user_registration_is_independent(client, alice: ApiUser):
    bob = await register_user(client, "bob")
    me = await client.get("/api/v1/auth/me", headers=bob.headers)
    assert me.json()["id"] == bob.id != alice.id
