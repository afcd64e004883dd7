"""The ``cryptoorchestrator`` command line (Typer)."""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cryptoorchestrator import __version__
from cryptoorchestrator.cli import backtest as backtest_cli
from cryptoorchestrator.cli import data as data_cli
from cryptoorchestrator.cli import runner as runner_cli
from cryptoorchestrator.cli import worker as worker_cli
from cryptoorchestrator.core.errors import CryptoOrchestratorError

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

app = typer.Typer(
    name="cryptoorchestrator",
    help="CryptoOrchestrator: self-hosted crypto trading platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
users_app = typer.Typer(help="User administration.", no_args_is_help=True)
keys_app = typer.Typer(help="Encryption keys for secrets at rest.", no_args_is_help=True)
openapi_app = typer.Typer(help="The OpenAPI document.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(openapi_app, name="openapi")
app.add_typer(data_cli.app, name="data")
app.add_typer(backtest_cli.app, name="backtest")
app.command("worker")(worker_cli.worker)
app.command("runner")(runner_cli.runner)


def _settings(**overrides: Any) -> Any:
    from cryptoorchestrator.config.settings import load_settings

    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]Error:[/bold red] {message}")
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        out.print(f"cryptoorchestrator {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Manage and run the platform. Configuration comes from CO_* variables and .env."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (CO_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (CO_PORT).", min=1, max=65535)] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1)] = 1,
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development).")] = False,
    migrate: Annotated[bool, typer.Option(help="Apply database migrations first.")] = True,
) -> None:
    """Start the API server."""
    import uvicorn

    from cryptoorchestrator.persistence import migrate as migrations

    settings = _settings(host=host, port=port)
    settings.check_startup()
    if migrate:
        migrations.upgrade(settings.resolved_database_url)
    console.print(
        f"CryptoOrchestrator {__version__} ({settings.env.value}) on http://{settings.host}:{settings.port} "
        f"- docs at /docs"
    )
    uvicorn.run(
        "cryptoorchestrator.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        reload=reload,
        log_config=None,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
    )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from cryptoorchestrator.persistence import migrate

    url = _settings().resolved_database_url
    migrate.upgrade(url, revision)
    out.print(f"Database at revision {migrate.current(url)}.")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")] = "-1",
) -> None:
    """Revert migrations down to REVISION (default: one step)."""
    from cryptoorchestrator.persistence import migrate

    url = _settings().resolved_database_url
    migrate.downgrade(url, revision)
    out.print(f"Database at revision {migrate.current(url) or 'base (empty)'}.")


@db_app.command("current")
def db_current() -> None:
    """Show the database's revision and the newest one."""
    from cryptoorchestrator.persistence import migrate

    url = _settings().resolved_database_url
    current = migrate.current(url)
    head = migrate.head_revision()
    out.print(f"current: {current or 'base (empty)'}\nhead:    {head}")
    if current != head:
        console.print("Run `cryptoorchestrator db upgrade` to bring the database up to date.")


@users_app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="Email address.", prompt=True)],
    username: Annotated[str, typer.Option(help="Username (3-32 characters).", prompt=True)],
    password: Annotated[
        str | None,
        typer.Option(
            help="Password; prompted when omitted (or CO_ADMIN_PASSWORD).", envvar="CO_ADMIN_PASSWORD"
        ),
    ] = None,
) -> None:
    """Create an administrator account."""
    from cryptoorchestrator.bootstrap import build_container
    from cryptoorchestrator.domain.identity import RequestMeta, Role
    from cryptoorchestrator.persistence import migrate

    if password is None:
        if not sys.stdin.isatty():
            raise _fail("No password given: pass --password or set CO_ADMIN_PASSWORD.")
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise _fail("The passwords differ.")
    settings = _settings()
    migrate.upgrade(settings.resolved_database_url)

    async def run() -> Any:
        container = build_container(settings)
        try:
            pair = await container.auth.register(
                email=email, password=password, username=username, role=Role.ADMIN, meta=RequestMeta(ip="cli")
            )
            return pair.user
        finally:
            await container.close()

    user = asyncio.run(run())
    out.print(f"Administrator '{user.username}' (id {user.id}, {user.email}) created.")


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new encryption key. Put it first in CO_ENCRYPTION_KEYS, then run `keys rotate`."""
    from cryptoorchestrator.security.encryption import generate_key

    out.print(generate_key())


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored secret under the newest key (the first of CO_ENCRYPTION_KEYS)."""
    from cryptoorchestrator.bootstrap import build_container
    from cryptoorchestrator.domain.identity import RequestMeta

    settings = _settings()

    async def run() -> Any:
        container = build_container(settings)
        try:
            return await container.key_rotation.rotate(meta=RequestMeta(ip="cli"))
        finally:
            await container.close()

    result = asyncio.run(run())
    out.print(
        f"{result.total} stored secret(s): {result.rotated} re-encrypted, "
        f"{result.already_current} already under the newest key."
    )


@openapi_app.command("export")
def openapi_export(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write.")] = Path(
        "docs/openapi.json"
    ),
    check: Annotated[bool, typer.Option(help="Only check that OUTPUT is current; exit 1 if not.")] = False,
) -> None:
    """Write the OpenAPI document (docs/openapi.json)."""
    from cryptoorchestrator.api.app import create_app
    from cryptoorchestrator.config.settings import Environment

    app_ = create_app(_settings(env=Environment.DEVELOPMENT, database_url="sqlite+aiosqlite:///:memory:"))
    text = json.dumps(app_.openapi(), indent=2, sort_keys=True) + "\n"
    if check:
        if not output.exists() or output.read_text() != text:
            raise _fail(f"{output} is out of date: run `cryptoorchestrator openapi export`.")
        out.print(f"{output} is current.")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    out.print(f"Wrote {output} ({len(app_.openapi()['paths'])} paths).")


def run() -> None:
    """Entry point: user-facing errors become one clear line, never a traceback."""
    try:
        app(args=data_cli.expand_multi_value_options(sys.argv[1:]))
    except CryptoOrchestratorError as exc:
        console.print(f"[bold red]Error:[/bold red] {exc.message}")
        for problem in exc.details.get("problems", []) if isinstance(exc.details, dict) else []:
            console.print(f"  - {problem if isinstance(problem, str) else problem.get('message', problem)}")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    run()
