"""Programmatic Alembic: upgrade, downgrade and current revision, for the CLI, `make run` and tests."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from cryptoorchestrator.persistence.database import create_null_pool_engine, normalise_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str, *, stdout: object = None) -> Config:
    config = Config(stdout=stdout) if stdout is not None else Config()  # type: ignore[arg-type]
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def _in_thread(fn: object, *args: object) -> None:
    """Alembic's env.py runs its own event loop, so never call it from inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn(*args)  # type: ignore[operator]
        return
    raise RuntimeError("call the async variants (aupgrade/adowngrade) from async code")


def upgrade(url: str, revision: str = "head") -> None:
    _in_thread(command.upgrade, alembic_config(url), revision)


def downgrade(url: str, revision: str = "-1") -> None:
    _in_thread(command.downgrade, alembic_config(url), revision)


async def aupgrade(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(command.upgrade, alembic_config(url), revision)


async def adowngrade(url: str, revision: str = "-1") -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def acurrent(url: str) -> str | None:
    engine = create_null_pool_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()


def current(url: str) -> str | None:
    return asyncio.run(acurrent(url))


def history() -> str:
    buffer = io.StringIO()
    command.history(alembic_config("sqlite://", stdout=buffer))
    return buffer.getvalue()
