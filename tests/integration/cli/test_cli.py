"""The command line as a user runs it: a real process, real exit codes, clear messages."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cryptoorchestrator.domain.identity import RequestMeta
from cryptoorchestrator.persistence import migrate
from cryptoorchestrator.security.encryption import SecretBox, generate_key
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, input: str | None = None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CO_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cryptoorchestrator", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        input=input,
        timeout=120,
        check=False,
    )


def test_help_everywhere():
    for args in (
        [],
        ["db"],
        ["users"],
        ["keys"],
        ["openapi"],
        ["serve", "--help"],
        ["db", "upgrade", "--help"],
    ):
        result = cli(*args, "--help") if args and args[-1] != "--help" else cli(*(args or ["--help"]))
        assert result.returncode == 0, (args, result.stderr)
        assert "Usage" in result.stdout


def test_db_commands(tmp_path):
    env = {"CO_DATA_DIR": str(tmp_path)}
    upgraded = cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    head = migrate.head_revision()
    assert head in upgraded.stdout
    assert (tmp_path / "cryptoorchestrator.db").exists()
    current = cli("db", "current", env=env)
    assert f"current: {head}" in current.stdout
    down = cli("db", "downgrade", "base", env=env)
    assert down.returncode == 0 and "base" in down.stdout
    assert "Run `cryptoorchestrator db upgrade`" in cli("db", "current", env=env).stderr


def test_create_admin(tmp_path):
    env = {"CO_DATA_DIR": str(tmp_path), "CO_ADMIN_PASSWORD": "admin-pass-phrase"}
    created = cli("users", "create-admin", "--email", "boss@example.com", "--username", "boss", env=env)
    assert created.returncode == 0, created.stderr
    assert "Administrator 'boss'" in created.stdout
    again = cli("users", "create-admin", "--email", "boss@example.com", "--username", "boss", env=env)
    assert again.returncode == 1
    assert "username is taken" in again.stderr and "Traceback" not in again.stderr
    weak = cli(
        "users", "create-admin", "--email", "x@example.com", "--username", "weak",
        env={**env, "CO_ADMIN_PASSWORD": "password"},
    )  # fmt: skip
    assert weak.returncode == 1 and "Password" in weak.stderr and "Traceback" not in weak.stderr


def test_serve_refuses_production_with_default_secret(tmp_path):
    result = cli("serve", env={"CO_ENV": "production", "CO_DATA_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "Refusing to start in production" in result.stderr
    assert "CO_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_keys_rotate_re_encrypts_every_secret(tmp_path):
    old_key, new_key = generate_key(), generate_key()
    db = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    env = {"CO_DATABASE_URL": db, "CO_DATA_DIR": str(tmp_path)}
    assert cli("db", "upgrade", env=env).returncode == 0

    async def make_user_with_2fa() -> str:
        from cryptoorchestrator.bootstrap import build_container

        container = build_container(make_settings(tmp_path, database_url=db, encryption_keys=[old_key]))
        pair = await container.auth.register(
            email="k@example.com", password="rotation-pass-1", username="keyuser", meta=RequestMeta()
        )
        await container.two_factor.setup(pair.user, password="rotation-pass-1", meta=RequestMeta())
        async with container.uow_factory() as uow:
            stored = (await uow.users.get_credentials(pair.user.id)).totp_secret_encrypted
        await container.close()
        return stored

    before = asyncio.run(make_user_with_2fa())
    plain = SecretBox([old_key]).decrypt(before)
    rotated = cli("keys", "rotate", env={**env, "CO_ENCRYPTION_KEYS": f"{new_key},{old_key}"})
    assert rotated.returncode == 0, rotated.stderr
    assert "1 stored secret(s): 1 re-encrypted" in rotated.stdout

    async def stored_secret() -> str:
        from cryptoorchestrator.bootstrap import build_container

        container = build_container(make_settings(tmp_path, database_url=db, encryption_keys=[new_key]))
        async with container.uow_factory() as uow:
            users, _ = await uow.users.list(limit=1, offset=0)
            value = (await uow.users.get_credentials(users[0].id)).totp_secret_encrypted
        await container.close()
        return value

    after = asyncio.run(stored_secret())
    assert after != before
    assert SecretBox([new_key]).decrypt(after) == plain, "the old key is no longer needed"
    again = cli("keys", "rotate", env={**env, "CO_ENCRYPTION_KEYS": f"{new_key},{old_key}"})
    assert "0 re-encrypted, 1 already under the newest key" in again.stdout
    bad = cli("keys", "rotate", env={**env, "CO_ENCRYPTION_KEYS": "garbage"})
    assert bad.returncode == 1 and "Fernet" in bad.stderr and "Traceback" not in bad.stderr


def test_keys_generate_prints_a_fernet_key():
    result = cli("keys", "generate")
    SecretBox([result.stdout.strip()])


def test_openapi_export(tmp_path):
    target = tmp_path / "openapi.json"
    assert cli("openapi", "export", "--output", str(target)).returncode == 0
    spec = json.loads(target.read_text())
    assert spec["info"]["title"] == "CryptoOrchestrator API"
    assert cli("openapi", "export", "--output", str(target), "--check").returncode == 0
    target.write_text("{}")
    stale = cli("openapi", "export", "--output", str(target), "--check")
    assert stale.returncode == 1 and "out of date" in stale.stderr
