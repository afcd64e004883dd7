"""``cryptoorchestrator worker``: a Celery worker running the platform's jobs.

Start it beside the API (``CO_JOBS_BACKEND=celery``) with the same ``CO_DATABASE_URL``,
``CO_DATA_DIR`` and ``CO_REDIS_URL``. With ``--concurrency 1`` the worker uses the solo pool
(the job runs in the worker process); above 1 it uses prefork, where each child process builds
its own container (database engine, services) on its first job. Cancelling a running job works
with both pools (workers poll the database for cancel requests; prefork children also handle
the revoke signal). Celery is imported only when this command runs.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.console import Console

from cryptoorchestrator.services.jobs import HEARTBEAT_SECONDS

console = Console(stderr=True, soft_wrap=True)


def _container_factory(settings: Any) -> Any:
    """Build the container in a worker process (the task calls this once per process)."""
    from cryptoorchestrator.bootstrap import build_container

    return build_container(settings)


def worker(
    concurrency: Annotated[
        int, typer.Option(help="Jobs run at once (1: solo pool; more: prefork processes).", min=1, max=64)
    ] = 1,
    loglevel: Annotated[str, typer.Option(help="Celery log level (debug, info, warning, error).")] = "info",
    pool: Annotated[
        str | None, typer.Option(help="Force a Celery pool: solo or prefork (default from --concurrency).")
    ] = None,
    heartbeat_seconds: Annotated[
        float, typer.Option(help="Seconds between heartbeats of running jobs.", min=0.1)
    ] = HEARTBEAT_SECONDS,
) -> None:
    """Run jobs from Redis (CO_REDIS_URL) in this process: the CO_JOBS_BACKEND=celery worker."""
    from cryptoorchestrator.config.logging import configure_logging
    from cryptoorchestrator.config.settings import load_settings

    settings = load_settings()
    if not settings.redis_url:
        console.print(
            "[bold red]Error:[/bold red] CO_REDIS_URL is not set: the worker takes its jobs from Redis "
            "(e.g. CO_REDIS_URL=redis://127.0.0.1:6379/0)."
        )
        raise typer.Exit(2)
    chosen = pool or ("solo" if concurrency == 1 else "prefork")
    if chosen not in ("solo", "prefork"):
        console.print(f"[bold red]Error:[/bold red] --pool must be solo or prefork, not {chosen!r}.")
        raise typer.Exit(2)
    if settings.jobs_backend != "celery":
        console.print(
            "[yellow]Note:[/yellow] CO_JOBS_BACKEND is not 'celery' here: make sure the API runs with "
            "CO_JOBS_BACKEND=celery, or its jobs never reach this worker."
        )

    from cryptoorchestrator.jobs.celery_app import QUEUE_NAME, make_celery

    configure_logging(level=settings.log_level, json=settings.log_json)
    app = make_celery(settings, container_factory=_container_factory, heartbeat_seconds=heartbeat_seconds)
    app.worker_main(
        argv=[
            "worker",
            f"--pool={chosen}",
            f"--concurrency={1 if chosen == 'solo' else concurrency}",
            f"--loglevel={loglevel.upper()}",
            f"--queues={QUEUE_NAME}",
            f"--hostname=cryptoorchestrator-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )
