"""The default job queue: asyncio tasks in the server process, a bounded number at a time.

Long CPU-bound work inside a handler must go to a process pool (``asyncio`` + executors) so the
API stays responsive; I/O-bound handlers (downloads) run on the loop directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from datetime import timedelta
from typing import Any

from cryptoorchestrator.domain.jobs import Job
from cryptoorchestrator.services.jobs import HEARTBEAT_SECONDS, JobService


def worker_name() -> str:
    """``host:pid`` of this process: how jobs remember who runs them."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_is_dead(worker: str) -> bool:
    """A worker on this host whose process is gone (a crash or restart here) is known dead at
    once; workers elsewhere are judged by their heartbeat."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class InProcessJobQueue:
    def __init__(self, service: JobService, *, concurrency: int = 2, logger: Any = None) -> None:
        self._service = service
        self._semaphore = asyncio.Semaphore(concurrency)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._maintenance: asyncio.Task[None] | None = None
        self._logger = logger

    async def start(self) -> None:
        """Fail orphans of a previous process, re-queue what was queued, start the heartbeat."""
        await self._service.fail_orphans(
            stale_after=timedelta(seconds=HEARTBEAT_SECONDS * 6),
            running_here=set(),
            worker_is_dead=worker_is_dead,
        )
        for job in await self._service.queued_jobs():
            await self.enqueue(job)
        self._maintenance = asyncio.create_task(self._maintain(), name="jobs-maintenance")

    async def stop(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def enqueue(self, job: Job) -> None:
        task = asyncio.create_task(self._run(job.id), name=f"job-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))

    async def cancel(self, job_id: str) -> None:
        task = self._tasks.get(job_id)
        if task is not None and not task.done():
            task.cancel()

    async def wait(self, job_id: str) -> None:
        """Wait for a job of this process to finish (tests, the CLI); wrap in asyncio.timeout."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.shield(task)

    @property
    def running(self) -> set[str]:
        return set(self._tasks)

    async def _run(self, job_id: str) -> None:
        async with self._semaphore:
            await self._service.execute(job_id)

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._service.heartbeat(list(self._tasks))
                await self._service.fail_orphans(
                    stale_after=timedelta(seconds=HEARTBEAT_SECONDS * 6),
                    running_here=self.running,
                    worker_is_dead=worker_is_dead,
                )
            except Exception:  # maintenance must outlive a database hiccup
                if self._logger is not None:
                    self._logger.exception("jobs_maintenance_failed")
