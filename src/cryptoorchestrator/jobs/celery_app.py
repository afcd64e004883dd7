"""The Celery application for ``CO_JOBS_BACKEND=celery``: Redis as broker, one task.

Nothing is built at import time: :func:`make_celery` builds an app from settings. The API side
(:class:`~cryptoorchestrator.jobs.celery_queue.CeleryJobQueue`) only sends ``run_job`` messages;
the worker side (``cryptoorchestrator worker``, see :mod:`cryptoorchestrator.cli.worker`) passes a
``container_factory`` so that the task can build the platform's container in the worker process.
The factory is injected because ``jobs`` sits below ``bootstrap`` in the import layers.

In the worker, each process (the main one with the solo pool, every child with prefork) builds
its container once, on its first task, and keeps it together with one event loop in a
background thread (:class:`WorkerRuntime`). Job state, progress and results stay in the database:
the task only calls :meth:`JobService.execute`. The same loop heartbeats the running job every
``heartbeat_seconds`` (so the API's orphan sweep can tell a dead worker from a busy one) and
polls the database for a cancel request every ``cancel_poll_seconds``; a canceled job's task is
cancelled, which :meth:`JobService.execute` records as ``canceled``. A revoke with
``terminate=True`` sends :data:`CANCEL_SIGNAL` to a prefork child; the child handles it by
cancelling its running job the same way (instead of dying with the job left ``running``). The
solo pool cannot terminate a task (Celery logs that the pool does not implement it): there the
database poll cancels the job, within ``cancel_poll_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from types import FrameType
from typing import Any, Protocol

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown

from cryptoorchestrator.config.logging import get_logger
from cryptoorchestrator.config.settings import Settings
from cryptoorchestrator.core.errors import ConfigurationError
from cryptoorchestrator.domain.jobs import JobStatus
from cryptoorchestrator.services.jobs import HEARTBEAT_SECONDS, JobService

#: The one task: run a job (by id) to a final state.
TASK_NAME = "cryptoorchestrator.run_job"
#: The queue the API sends to and the workers consume.
QUEUE_NAME = "cryptoorchestrator.jobs"
#: What ``revoke(terminate=True)`` sends to the process running a job. Prefork children handle
#: it by cancelling the job (recorded ``canceled``); SIGTERM would kill the child instead, and
#: billiard uses SIGUSR1 in its children for soft time limits.
CANCEL_SIGNAL = "SIGUSR2"
#: How often a worker checks the database for cancel requests of its running jobs.
CANCEL_POLL_SECONDS = 1.0

_log = get_logger("cryptoorchestrator.jobs.celery")


class WorkerContainer(Protocol):
    """What the worker needs of the platform's container (``bootstrap.Container`` fits)."""

    jobs: JobService
    uow_factory: Any
    clock: Any

    async def close(self) -> None: ...


ContainerFactory = Callable[[Settings], WorkerContainer]


def require_redis_url(settings: Settings) -> str:
    """The broker URL, or a ConfigurationError saying how to set it."""
    if not settings.redis_url:
        raise ConfigurationError(
            "CO_JOBS_BACKEND=celery needs Redis as the broker: set CO_REDIS_URL "
            "(e.g. redis://127.0.0.1:6379/0), or use CO_JOBS_BACKEND=inprocess."
        )
    return settings.redis_url


class WorkerRuntime:
    """Per worker process: the container, an event loop in a thread, heartbeats and cancels.

    Built lazily on the first task of the process (after a prefork fork, never before), reused
    for every later task, closed when the process shuts down.
    """

    def __init__(
        self,
        settings: Settings,
        container_factory: ContainerFactory,
        *,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        cancel_poll_seconds: float = CANCEL_POLL_SECONDS,
    ) -> None:
        self._settings = settings
        self._factory = container_factory
        self.heartbeat_seconds = heartbeat_seconds
        self.cancel_poll_seconds = cancel_poll_seconds
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._container: WorkerContainer | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        #: Set in prefork children (``worker_process_init``): handle :data:`CANCEL_SIGNAL`.
        self.handle_cancel_signal = False

    @property
    def started(self) -> bool:
        return self._loop is not None

    def run_job(self, job_id: str) -> None:
        """Run one job to a final state (blocks the calling thread until it is done)."""
        loop = self._ensure_started()
        future: Future[None] = asyncio.run_coroutine_threadsafe(self._execute(job_id), loop)
        future.result()

    def cancel_running(self) -> None:
        """Cancel every job this process runs (signal-safe: only schedules work on the loop)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._cancel_all)

    def close(self) -> None:
        """Stop the maintenance, close the container and the loop (idempotent)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()

    def _on_cancel_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.cancel_running()

    # --- inside the loop -----------------------------------------------------------------

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="co-jobs-loop", daemon=True)
            thread.start()
            try:
                asyncio.run_coroutine_threadsafe(self._startup(), loop).result()
            except BaseException:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=10)
                loop.close()
                raise
            self._loop, self._thread = loop, thread
            if self.handle_cancel_signal and threading.current_thread() is threading.main_thread():
                # Installed here, on the first task, because billiard resets the child's
                # signal handlers after ``worker_process_init``.
                signal.signal(getattr(signal, CANCEL_SIGNAL), self._on_cancel_signal)
            return loop

    async def _startup(self) -> None:
        # Built on the loop's thread: async engines bind their pools to the loop they run on.
        self._container = self._factory(self._settings)
        self._maintenance = asyncio.create_task(self._maintain(), name="jobs-worker-maintenance")

    async def _shutdown(self) -> None:
        self._cancel_all()
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        if self._container is not None:
            await self._container.close()
            self._container = None

    def _cancel_all(self) -> None:
        for task in self._running.values():
            task.cancel()

    async def _execute(self, job_id: str) -> None:
        container = self._require_container()
        task = asyncio.create_task(container.jobs.execute(job_id), name=f"job-{job_id}")
        self._running[job_id] = task
        try:
            await task
        except asyncio.CancelledError:
            # Cancelled before the handler ran (execute only records a cancellation raised
            # inside the handler): make sure the job does not stay running.
            await self._mark_canceled_if_active(container, job_id)
        finally:
            self._running.pop(job_id, None)

    async def _mark_canceled_if_active(self, container: WorkerContainer, job_id: str) -> None:
        async with container.uow_factory() as uow:
            job = await uow.jobs.get(job_id)
            if job is not None and job.status.is_active:
                await uow.jobs.update(
                    job_id, status=JobStatus.CANCELED, finished_at=container.clock.now(), message="Canceled."
                )
                await uow.commit()

    async def _maintain(self) -> None:
        last_beat = time.monotonic()
        while True:
            await asyncio.sleep(min(self.cancel_poll_seconds, self.heartbeat_seconds))
            job_ids = list(self._running)
            if not job_ids:
                continue
            try:
                container = self._require_container()
                if time.monotonic() - last_beat >= self.heartbeat_seconds:
                    await container.jobs.heartbeat(job_ids)
                    last_beat = time.monotonic()
                for job_id in await self._cancel_requested(container, job_ids):
                    task = self._running.get(job_id)
                    if task is not None:
                        task.cancel()
            except Exception:  # maintenance must outlive a database hiccup
                _log.exception("jobs_worker_maintenance_failed")

    async def _cancel_requested(self, container: WorkerContainer, job_ids: list[str]) -> list[str]:
        requested: list[str] = []
        async with container.uow_factory() as uow:
            for job_id in job_ids:
                job = await uow.jobs.get(job_id)
                if job is not None and job.cancel_requested:
                    requested.append(job_id)
        return requested

    def _require_container(self) -> WorkerContainer:
        if self._container is None:
            raise RuntimeError("the worker runtime is not started")
        return self._container


def make_celery(
    settings: Settings,
    *,
    container_factory: ContainerFactory | None = None,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
    cancel_poll_seconds: float = CANCEL_POLL_SECONDS,
) -> Celery:
    """The Celery app for these settings. Raises ConfigurationError when CO_REDIS_URL is unset.

    Without ``container_factory`` (the API side) the app can send tasks and revoke them, and
    running a task raises. With it (the worker side) each worker process builds a container on
    its first task; the app's ``conf.cryptoorchestrator_runtime`` is that process's runtime.
    """
    broker = require_redis_url(settings)
    app = Celery("cryptoorchestrator", broker=broker, backend=broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        # Job state and results live in the database; the backend only keeps revoke marks.
        task_ignore_result=True,
        result_expires=3600,
        task_default_queue=QUEUE_NAME,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        timezone="UTC",
        enable_utc=True,
    )
    runtime = (
        WorkerRuntime(
            settings,
            container_factory,
            heartbeat_seconds=heartbeat_seconds,
            cancel_poll_seconds=cancel_poll_seconds,
        )
        if container_factory is not None
        else None
    )
    app.conf.cryptoorchestrator_runtime = runtime

    @app.task(name=TASK_NAME, ignore_result=True)  # type: ignore[misc, untyped-decorator, unused-ignore]
    def run_job(job_id: str) -> None:
        """Run the job ``job_id`` to a final state (recorded in the database)."""
        if runtime is None:
            raise ConfigurationError(
                "This Celery app has no container factory: start workers with `cryptoorchestrator worker`."
            )
        runtime.run_job(job_id)

    if runtime is not None:
        _connect_worker_signals(runtime)
    return app


def _connect_worker_signals(runtime: WorkerRuntime) -> None:
    """Prefork children handle :data:`CANCEL_SIGNAL`; every worker process closes its runtime."""

    def on_process_init(**_: Any) -> None:
        runtime.handle_cancel_signal = True

    def on_shutdown(**_: Any) -> None:
        runtime.close()

    worker_process_init.connect(on_process_init, weak=False)
    worker_process_shutdown.connect(on_shutdown, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
