"""Tokens, passwords, encryption, API keys and TOTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from cryptoorchestrator.core.errors import AuthenticationFailed, ConfigurationError, TokenExpired
from cryptoorchestrator.security import apikeys, passwords, totp
from cryptoorchestrator.security.encryption import SecretBox, derive_key, generate_key
from cryptoorchestrator.security.passwords import PasswordHasher
from cryptoorchestrator.security.tokens import TokenService

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_token_round_trip():
    service = TokenService("s" * 40)
    issued = service.issue(user_id=7, session_id="sid", token_type="access", now=NOW)
    claims = service.decode(issued.token, expected_type="access", now=NOW + timedelta(minutes=29))
    assert claims.user_id == 7 and claims.session_id == "sid"
    with pytest.raises(TokenExpired):
        service.decode(issued.token, expected_type="access", now=NOW + timedelta(minutes=30))
    with pytest.raises(AuthenticationFailed):
        service.decode(issued.token, expected_type="refresh", now=NOW)


def test_token_claims_are_read_once_and_checked_on_every_use():
    service = TokenService("s" * 40)
    issued = service.issue(user_id=7, session_id="sid", token_type="access", now=NOW)
    first = service.decode(issued.token, expected_type="access", now=NOW)
    again = service.decode(issued.token, expected_type="access", now=NOW + timedelta(minutes=1))
    assert again == first == issued.claims
    assert service.subject(issued.token) == "7"
    with pytest.raises(AuthenticationFailed):
        service.decode(issued.token, expected_type="refresh", now=NOW)
    with pytest.raises(TokenExpired):
        service.decode(issued.token, expected_type="access", now=NOW + timedelta(hours=1))
    assert service.decode(issued.token, expected_type="access", now=NOW) == first


@pytest.mark.parametrize(
    "changes",
    [{"sub": "not-a-number"}, {"iat": "yesterday"}, {"exp": "later"}, {"typ": "session"}],
)
def test_signed_token_with_malformed_claims_is_invalid(changes):
    """Correctly signed but not what we issue: refused as invalid (or expired), never a crash."""
    service = TokenService("s" * 40)
    payload = {
        "sub": "1", "sid": "x", "jti": "y", "typ": "access", "iss": "cryptoorchestrator",
        "iat": int(NOW.timestamp()), "exp": int(NOW.timestamp()) + 60, **changes,
    }  # fmt: skip
    token = jwt.encode(payload, "s" * 40, algorithm="HS256")
    with pytest.raises(AuthenticationFailed):
        service.decode(token, expected_type="access", now=NOW)


def test_token_service_refuses_alg_none():
    with pytest.raises(ValueError, match="unsigned"):
        TokenService("s" * 40, algorithm="none")
    service = TokenService("s" * 64)
    payload = {
        "sub": "1",
        "sid": "x",
        "jti": "y",
        "typ": "access",
        "iss": "cryptoorchestrator",
        "iat": 0,
        "exp": 2**40,
    }
    with pytest.raises(AuthenticationFailed):
        service.decode(jwt.encode(payload, None, algorithm="none"), expected_type="access", now=NOW)
    hs512 = jwt.encode(payload, "s" * 64, algorithm="HS512")
    with pytest.raises(AuthenticationFailed):
        service.decode(hs512, expected_type="access", now=NOW)


def test_password_hashing_is_argon2id():
    hasher = PasswordHasher(time_cost=1, memory_kib=64, parallelism=1)
    hashed = hasher.hash("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert hasher.verify("correct horse battery", hashed)
    assert not hasher.verify("wrong", hashed)
    assert not hasher.verify("anything", None)
    assert not hasher.verify("anything", "not-a-hash")
    stronger = PasswordHasher(time_cost=2, memory_kib=128, parallelism=1)
    assert stronger.needs_rehash(hashed)
    assert not hasher.needs_rehash(hashed)


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("short", False),
        ("qwertyuiop", False),
        ("Password123", False),
        ("1q2w3e4r5t", False),
        ("x" * 129, False),
        ("correct horse battery", True),
        ("zebra-lantern-42", True),
    ],
)
def test_password_policy(password, ok):
    assert (passwords.password_problems(password) == []) is ok


def test_password_must_not_equal_username():
    assert passwords.password_problems("trader-number-one", username="Trader-Number-One")


def test_secret_box_round_trip_and_rotation():
    old, new = generate_key(), generate_key()
    old_box = SecretBox([old])
    token = old_box.encrypt("api-secret")
    assert "api-secret" not in token
    both = SecretBox([new, old])
    assert both.decrypt(token) == "api-secret"
    assert not both.is_current(token)
    rotated = both.rotate(token)
    assert both.is_current(rotated)
    assert SecretBox([new]).decrypt(rotated) == "api-secret"
    with pytest.raises(ConfigurationError):
        SecretBox([new]).decrypt(token)


def test_secret_box_rejects_bad_keys():
    with pytest.raises(ConfigurationError):
        SecretBox([])
    with pytest.raises(ConfigurationError, match="Fernet"):
        SecretBox(["not-a-key"])
    assert (
        SecretBox([derive_key("some secret")]).decrypt(SecretBox([derive_key("some secret")]).encrypt("v"))
        == "v"
    )


def test_api_keys():
    generated = apikeys.generate_api_key()
    assert apikeys.parse_prefix(generated.key) == generated.prefix
    assert apikeys.digest_matches(generated.key, generated.digest)
    assert not apikeys.digest_matches(generated.key + "x", generated.digest)
    assert apikeys.parse_prefix("co_short_x") is None
    assert apikeys.parse_prefix("xx_000000000000_y") is None


def test_totp_window():
    secret = totp.new_secret()
    code = totp.current_code(secret, at=NOW)
    assert totp.verify(secret, code, at=NOW)
    assert totp.verify(secret, code, at=NOW + timedelta(seconds=30))
    assert not totp.verify(secret, code, at=NOW + timedelta(minutes=5))
    assert not totp.verify(secret, "abcdef", at=NOW)
