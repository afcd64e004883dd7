"""The API side of ``CO_JOBS_BACKEND=celery``: jobs are sent to Celery workers through Redis.

:class:`CeleryJobQueue` implements the :class:`~cryptoorchestrator.services.jobs.JobQueue`
protocol (and ``start``/``stop`` like the in-process queue). Job state stays in the database:
:meth:`JobService.submit` records the job and calls :meth:`enqueue`, which sends the
``cryptoorchestrator.run_job`` task with the job id as the task id; a worker runs it through
:meth:`JobService.execute`. Cancellation: :meth:`JobService.cancel_or_delete` marks the job
cancel-requested (a queued job is canceled at once), then :meth:`cancel` revokes the task, with
``terminate=True`` so that a running one is interrupted (the worker records it ``canceled``).
Workers heartbeat their running jobs; this queue sweeps orphans periodically so a job whose
worker died is marked ``failed``, never left running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import Celery

from cryptoorchestrator.config.settings import Settings
from cryptoorchestrator.domain.jobs import Job
from cryptoorchestrator.jobs.celery_app import CANCEL_SIGNAL, TASK_NAME, make_celery
from cryptoorchestrator.jobs.inprocess import worker_is_dead
from cryptoorchestrator.services.jobs import HEARTBEAT_SECONDS, JobService

#: A running job whose worker has been silent this long is failed by the sweep.
STALE_AFTER = timedelta(seconds=HEARTBEAT_SECONDS * 6)


class CeleryJobQueue:
    """Sends jobs to Celery workers; sweeps jobs whose worker died."""

    def __init__(
        self,
        service: JobService,
        app: Celery,
        *,
        sweep_seconds: float = HEARTBEAT_SECONDS,
        stale_after: timedelta = STALE_AFTER,
        is_dead: Callable[[str], bool] = worker_is_dead,
        logger: Any = None,
    ) -> None:
        """``is_dead(worker)`` says a worker is known dead without waiting for ``stale_after``
        (by default: a worker process on this host that is gone)."""
        self._service = service
        self.app = app
        self.sweep_seconds = sweep_seconds
        self.stale_after = stale_after
        self._is_dead = is_dead
        self._maintenance: asyncio.Task[None] | None = None
        self._logger = logger

    @classmethod
    def from_settings(cls, service: JobService, settings: Settings, *, logger: Any = None) -> CeleryJobQueue:
        """The queue for these settings (ConfigurationError when CO_REDIS_URL is unset)."""
        return cls(service, make_celery(settings), logger=logger)

    async def start(self) -> None:
        """Fail orphans left by dead workers, then sweep periodically.

        Queued jobs are not re-sent: their messages wait in Redis (sending them again could run
        a job twice).
        """
        await self.sweep_orphans()
        self._maintenance = asyncio.create_task(self._maintain(), name="jobs-celery-maintenance")

    async def stop(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        await asyncio.to_thread(self.app.close)

    async def enqueue(self, job: Job) -> None:
        """Send the job to the workers (the task id is the job id)."""
        await asyncio.to_thread(self.app.send_task, TASK_NAME, args=[job.id], task_id=job.id)

    async def cancel(self, job_id: str) -> None:
        """Revoke the job's task: a queued one never starts; a running one is interrupted.

        The job is already marked cancel-requested in the database (workers also poll for
        that), so a revoke that reaches no worker still ends with the job ``canceled``.
        """
        await asyncio.to_thread(self.app.control.revoke, job_id, terminate=True, signal=CANCEL_SIGNAL)

    async def sweep_orphans(self, *, stale_after: timedelta | None = None) -> int:
        """Fail running jobs whose worker is known dead or silent for ``stale_after``."""
        return await self._service.fail_orphans(
            stale_after=stale_after or self.stale_after, running_here=set(), worker_is_dead=self._is_dead
        )

    @property
    def running(self) -> set[str]:
        """Jobs running in this process: none (they run in the workers)."""
        return set()

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            try:
                await self.sweep_orphans()
            except Exception:  # maintenance must outlive a database hiccup
                if self._logger is not None:
                    self._logger.exception("jobs_maintenance_failed")
