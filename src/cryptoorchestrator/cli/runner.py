"""``cryptoorchestrator runner``: a bot runner process without the API (scale-out).

Start as many as needed against the same database (``CO_DATABASE_URL``, PostgreSQL for more
than one machine) and data folder (``CO_DATA_DIR``). Each one holds bots through database
leases (``services/bot_runner.py``): bots spread over the runners, and the bots of a runner
that dies move to the others once its leases expire (``CO_BOT_LEASE_SECONDS``). On start the
process first settles what a crash left open (``TradingRuntime.recover``: orders whose outcome
was unknown are looked up, paper orders rest again), then resumes its bots. SIGTERM or Ctrl-C
stop it cleanly: its leases are released, so other runners take its bots at once.

Run the API with ``CO_RUNNER_ENABLED=false`` when separate runners do all the trading.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console(stderr=True, soft_wrap=True)


async def run_runner(container: Any, *, stop: asyncio.Event, announce: Any = None) -> None:
    """Run ``container``'s bot runner until ``stop`` is set, then close the container."""
    try:
        await container.trading.start()  # recover first (bot_runner L3)
        runner = container.bot_runner
        await runner.start()
        if announce is not None:
            announce(runner.runner_id)
        await stop.wait()
    finally:
        await container.close()


def runner(
    capacity: Annotated[
        int | None, typer.Option(help="Most bots this runner holds (CO_RUNNER_CAPACITY).", min=1)
    ] = None,
    heartbeat_seconds: Annotated[
        float | None,
        typer.Option(help="Seconds between lease renewals (CO_BOT_HEARTBEAT_SECONDS).", min=0.01),
    ] = None,
    lease_seconds: Annotated[
        float | None, typer.Option(help="Lease time to live in seconds (CO_BOT_LEASE_SECONDS).", min=0.05)
    ] = None,
    migrate: Annotated[bool, typer.Option(help="Apply database migrations first.")] = False,
) -> None:
    """Run bots without the API: a runner process holding bots through database leases."""
    from cryptoorchestrator.bootstrap import build_container
    from cryptoorchestrator.config.logging import configure_logging
    from cryptoorchestrator.config.settings import load_settings
    from cryptoorchestrator.persistence import migrate as migrations

    overrides = {
        "runner_capacity": capacity,
        "bot_heartbeat_seconds": heartbeat_seconds,
        "bot_lease_seconds": lease_seconds,
    }
    settings = load_settings(**{key: value for key, value in overrides.items() if value is not None})
    configure_logging(level=settings.log_level, json=settings.log_json)
    if migrate:
        migrations.upgrade(settings.resolved_database_url)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
                loop.add_signal_handler(signum, stop.set)

        def announce(runner_id: str) -> None:
            console.print(f"bot runner {runner_id} started", highlight=False)

        await run_runner(build_container(settings), stop=stop, announce=announce)

    asyncio.run(main())
