"""Background jobs: submission, progress, cancellation and results, persisted in the database.

Whatever runs the jobs (the in-process queue by default, workers later) goes through
:meth:`JobService.execute`, so state, ``progress_percent`` and results always live in the database,
and a job whose worker died is marked failed by :meth:`JobService.fail_orphans`, never left running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from cryptoorchestrator.core.clock import Clock
from cryptoorchestrator.core.errors import CryptoOrchestratorError, NotFound, ValidationFailed
from cryptoorchestrator.core.ids import new_uuid
from cryptoorchestrator.domain.jobs import Job, JobStatus
from cryptoorchestrator.services.ports import UnitOfWorkFactory

HEARTBEAT_SECONDS = 10.0
PROGRESS_WRITE_SECONDS = 0.5


class JobCanceled(Exception):
    """Raised inside a handler (by :meth:`JobContext.report`) once cancellation was requested."""


@dataclass
class JobContext:
    """What a handler sees: its job, a progress reporter and a cancellation check."""

    job: Job
    _report: Callable[[float, str | None], Awaitable[None]]
    _canceled: Callable[[], bool]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, Any]:
        return self.job.params

    async def report(self, percent: float, message: str | None = None) -> None:
        """Record progress (0-100). Raises JobCanceled when the job was canceled meanwhile."""
        if self._canceled():
            raise JobCanceled()
        await self._report(max(0.0, min(100.0, percent)), message)


JobHandler = Callable[[JobContext], Awaitable[dict[str, Any]]]


class JobQueue(Protocol):
    """Runs jobs somewhere (this process, or workers)."""

    async def enqueue(self, job: Job) -> None: ...

    async def cancel(self, job_id: str) -> None: ...


class JobService:
    def __init__(
        self, uow_factory: UnitOfWorkFactory, *, clock: Clock, worker_name: str, logger: Any = None
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self.worker_name = worker_name
        self._handlers: dict[str, JobHandler] = {}
        self._queue: JobQueue | None = None
        self._canceled: set[str] = set()
        self._logger = logger

    # --- wiring ------------------------------------------------------------------------

    def register(self, kind: str, handler: JobHandler) -> None:
        self._handlers[kind] = handler

    def attach_queue(self, queue: JobQueue) -> None:
        self._queue = queue

    @property
    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    # --- the user's side ----------------------------------------------------------------

    async def submit(self, user_id: int, kind: str, params: dict[str, Any]) -> Job:
        if kind not in self._handlers:
            raise ValidationFailed(f"Unknown job kind '{kind}'.", details={"kinds": self.kinds})
        if self._queue is None:
            raise RuntimeError("no job queue attached")
        async with self._uow() as uow:
            job = await uow.jobs.add(
                job_id=new_uuid(), user_id=user_id, kind=kind, params=params, now=self._clock.now()
            )
            await uow.commit()
        await self._queue.enqueue(job)
        return job

    async def get(self, user_id: int, job_id: str) -> Job:
        async with self._uow() as uow:
            job = await uow.jobs.get_for_user(job_id, user_id)
        if job is None:
            raise NotFound("Job not found.")
        return job

    async def list(
        self, user_id: int, *, limit: int, offset: int, status: str | None = None, kind: str | None = None
    ) -> tuple[list[Job], int]:
        async with self._uow() as uow:
            return await uow.jobs.list_for_user(user_id, limit=limit, offset=offset, status=status, kind=kind)

    async def cancel_or_delete(self, user_id: int, job_id: str) -> Job | None:
        """Cancel an active job (returned, now canceled); delete a finished one (returns None)."""
        async with self._uow() as uow:
            job = await uow.jobs.get_for_user(job_id, user_id)
            if job is None:
                raise NotFound("Job not found.")
            if not job.status.is_active:
                await uow.jobs.delete(job_id)
                await uow.commit()
                return None
            await uow.jobs.update(job_id, cancel_requested=True)
            if job.status is JobStatus.QUEUED:
                await uow.jobs.update(
                    job_id, status=JobStatus.CANCELED, finished_at=self._clock.now(), message="Canceled."
                )
            await uow.commit()
        self._canceled.add(job_id)
        if self._queue is not None:
            await self._queue.cancel(job_id)
        return await self.get(user_id, job_id)

    # --- the runner's side --------------------------------------------------------------

    async def execute(self, job_id: str) -> None:
        """Run one job to a final state. Called by the queue; never raises for job failures."""
        async with self._uow() as uow:
            job = await uow.jobs.get(job_id)
            if job is None or job.status is not JobStatus.QUEUED or job.cancel_requested:
                return
            now = self._clock.now()
            await uow.jobs.update(
                job_id, status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, worker=self.worker_name
            )
            await uow.commit()
        handler = self._handlers[job.kind]
        last_write = [0.0]

        async def report(percent: float, message: str | None) -> None:
            # Throttled: a fast loop reporting every candle must not hammer the database.
            if time.monotonic() - last_write[0] < PROGRESS_WRITE_SECONDS and percent < 100:
                return
            last_write[0] = time.monotonic()
            async with self._uow() as uow:
                await uow.jobs.update(
                    job_id,
                    progress_percent=round(percent, 2),
                    message=message,
                    heartbeat_at=self._clock.now(),
                )
                await uow.commit()

        context = JobContext(job=job, _report=report, _canceled=lambda: job_id in self._canceled)
        try:
            result = await handler(context)
        except (JobCanceled, asyncio.CancelledError):
            await self._finish(job_id, JobStatus.CANCELED, message="Canceled.")
            return
        except CryptoOrchestratorError as exc:
            error = {"code": exc.code, "message": exc.message, "details": exc.details}
            await self._finish(job_id, JobStatus.FAILED, message=exc.message, error=error)
            return
        except Exception as exc:  # a bug in a handler fails its job, not the runner
            if self._logger is not None:
                self._logger.exception("job_failed", job_id=job_id, kind=job.kind)
            message = f"The job failed unexpectedly ({type(exc).__name__})."
            error = {"code": "INTERNAL_ERROR", "message": message}
            await self._finish(job_id, JobStatus.FAILED, message=error["message"], error=error)
            return
        finally:
            self._canceled.discard(job_id)
        await self._finish(job_id, JobStatus.SUCCEEDED, message="Done.", result=result, progress=100.0)

    async def _finish(
        self,
        job_id: str,
        status: JobStatus,
        *,
        message: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        progress: float | None = None,
    ) -> None:
        fields: dict[str, Any] = {"status": status, "message": message, "finished_at": self._clock.now()}
        if result is not None:
            fields["result"] = result
        if error is not None:
            fields["error"] = error
        if progress is not None:
            fields["progress_percent"] = progress
        async with self._uow() as uow:
            await uow.jobs.update(job_id, **fields)
            await uow.commit()

    async def heartbeat(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        async with self._uow() as uow:
            now = self._clock.now()
            for job_id in job_ids:
                await uow.jobs.update(job_id, heartbeat_at=now)
            await uow.commit()

    async def fail_orphans(
        self,
        *,
        stale_after: timedelta,
        running_here: set[str],
        worker_is_dead: Callable[[str], bool] = lambda _: False,
    ) -> int:
        """Jobs marked running whose worker died (known dead, or silent for ``stale_after``) are
        failed, never left running."""
        now = self._clock.now()
        failed = 0
        async with self._uow() as uow:
            for job in await uow.jobs.active():
                if job.status is not JobStatus.RUNNING or job.id in running_here:
                    continue
                beat = job.heartbeat_at or job.started_at or job.created_at
                if now - beat >= stale_after or worker_is_dead(job.worker or ""):
                    message = "The worker running this job stopped (crash or restart); run it again."
                    await uow.jobs.update(
                        job.id,
                        status=JobStatus.FAILED,
                        finished_at=now,
                        message=message,
                        error={"code": "WORKER_LOST", "message": message},
                    )
                    failed += 1
            await uow.commit()
        return failed

    async def queued_jobs(self) -> list[Job]:
        async with self._uow() as uow:
            return [job for job in await uow.jobs.active() if job.status is JobStatus.QUEUED]
