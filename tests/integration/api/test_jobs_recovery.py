"""A job whose worker died is failed, never left running; queued jobs survive a restart."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from cryptoorchestrator.domain.jobs import JobStatus
from cryptoorchestrator.jobs.inprocess import worker_is_dead, worker_name
from cryptoorchestrator.testing.api import register_user
from tests.conftest import client_for

pytestmark = pytest.mark.integration


def test_worker_liveness():
    assert not worker_is_dead(worker_name())
    host = worker_name().rsplit(":", 1)[0]
    assert worker_is_dead(f"{host}:999999")
    assert not worker_is_dead("another-host:1")


async def test_orphaned_running_job_is_failed(app_factory, clock):
    app, container = await app_factory()
    async with client_for(app) as http:
        owner = await register_user(http, "owner")
    async with container.uow_factory() as uow:
        job = await uow.jobs.add(
            job_id="j-dead", user_id=owner.id, kind="market_data.download", params={}, now=clock.now()
        )
        await uow.jobs.update(
            job.id, status=JobStatus.RUNNING, worker=f"{worker_name().rsplit(':', 1)[0]}:999999",
            started_at=clock.now(), heartbeat_at=clock.now(),
        )  # fmt: skip
        silent = await uow.jobs.add(job_id="j-silent", user_id=owner.id, kind="x", params={}, now=clock.now())
        await uow.jobs.update(
            silent.id,
            status=JobStatus.RUNNING,
            worker="elsewhere:1",
            started_at=clock.now(),
            heartbeat_at=clock.now(),
        )
        await uow.commit()
    failed = await container.jobs.fail_orphans(
        stale_after=timedelta(seconds=60), running_here=set(), worker_is_dead=worker_is_dead
    )
    assert failed == 1
    dead = await container.jobs.get(owner.id, "j-dead")
    assert dead.status is JobStatus.FAILED and dead.error["code"] == "WORKER_LOST"
    assert (await container.jobs.get(owner.id, "j-silent")).status is JobStatus.RUNNING
    clock.advance(61)
    assert await container.jobs.fail_orphans(stale_after=timedelta(seconds=60), running_here=set()) == 1
    assert (await container.jobs.get(owner.id, "j-silent")).status is JobStatus.FAILED


async def test_queued_jobs_run_after_a_restart(app_factory, clock):
    app, container = await app_factory()
    ran = asyncio.Event()

    async def handler(context):
        ran.set()
        return {"done": True}

    async with client_for(app) as http:
        owner = await register_user(http, "owner")
    async with container.uow_factory() as uow:
        await uow.jobs.add(
            job_id="j-queued", user_id=owner.id, kind="test.handler", params={}, now=clock.now()
        )
        await uow.commit()
    container.jobs.register("test.handler", handler)
    await container.job_queue.start()  # what a restarted process does
    async with asyncio.timeout(10):
        await ran.wait()
        await container.job_queue.wait("j-queued")
    assert (await container.jobs.get(owner.id, "j-queued")).status is JobStatus.SUCCEEDED


async def test_a_failing_handler_fails_its_job_only(app_factory):
    app, container = await app_factory()

    async def broken(context):
        raise RuntimeError("boom")

    container.jobs.register("test.broken", broken)
    async with client_for(app) as http:
        owner = await register_user(http, "owner")
        job = await container.jobs.submit(owner.id, "test.broken", {})
        async with asyncio.timeout(10):
            await container.job_queue.wait(job.id)
        body = (await http.get(f"/api/v1/jobs/{job.id}", headers=owner.headers)).json()
    assert body["status"] == "failed"
    assert body["error"]["code"] == "INTERNAL_ERROR" and "boom" not in body["error"]["message"]
