"""CO_JOBS_BACKEND=celery end to end: a real worker subprocess, jobs submitted through the API.

Needs Redis at CO_TEST_REDIS_URL (its database is flushed after each test). The worker shares
the test's database (SQLite file, or PostgreSQL at CO_TEST_DATABASE_URL) and data directory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cryptoorchestrator.core.clock import Clock, LiveClock
from cryptoorchestrator.jobs.celery_queue import CeleryJobQueue
from cryptoorchestrator.testing.api import ApiUser, register_user
from tests.conftest import client_for

REDIS_URL = os.environ.get("CO_TEST_REDIS_URL")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.redis,
    pytest.mark.skipif(
        not REDIS_URL, reason="needs Redis: set CO_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/14)"
    ),
]

BODY = {
    "symbol": "BTCUSDT",
    "timeframe": "1h",
    "start": "2023-01-01T00:00:00Z",
    "end": "2023-04-01T00:00:00Z",
    "initial_capital": "10000",
    "commission": 0.001,
}
SMA = {"type": "sma_cross", "params": {"fast": 10, "slow": 30}}
#: A user strategy that takes its time, so a job is reliably seen running.
SLOW = {"type": "slow_signals", "params": {"seconds": 20}}
SLOW_STRATEGY = textwrap.dedent(
    '''
    """Sleeps, then never trades: a long-running job for the worker tests."""

    import time
    from typing import ClassVar

    import numpy as np
    import pandas as pd
    from pydantic import Field

    from cryptoorchestrator.strategies import base


    class SlowParams(base.StrategyParams):
        seconds: float = Field(default=20, ge=0, le=60)


    class SlowSignals(base.Strategy[SlowParams]):
        """Waits, then holds no position."""

        name: ClassVar[str] = "slow_signals"
        description: ClassVar[str] = "Sleeps before answering"
        params_model = SlowParams

        def signals(self, candles: pd.DataFrame, params: SlowParams) -> base.Signals:
            time.sleep(params.seconds)
            flat = np.zeros(len(candles), dtype=bool)
            return base.Signals.long_only(flat, flat)
    '''
)
HEARTBEAT = 0.5


@pytest.fixture
def clock() -> Clock:
    """The real clock: the API side judges the worker's (real-time) heartbeats."""
    return LiveClock()


@pytest.fixture
def strategies_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "strategies"
    directory.mkdir()
    (directory / "slow.py").write_text(SLOW_STRATEGY)
    return directory


@pytest.fixture(autouse=True)
def flush_redis() -> Iterator[None]:
    import redis

    client = redis.Redis.from_url(REDIS_URL or "")
    client.flushdb()
    yield
    client.flushdb()
    client.close()


class Worker:
    """A `cryptoorchestrator worker` subprocess (in its own process group)."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def kill(self) -> None:
        """kill -9 the worker and every process it started (a crashed machine)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it takes too long."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def start_worker(tmp_path: Path, database_url: str, strategies_dir: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(*, concurrency: int = 1) -> Worker:
        env = {
            **os.environ,
            "CO_ENV": "test",
            "CO_JOBS_BACKEND": "celery",
            "CO_REDIS_URL": REDIS_URL or "",
            "CO_DATABASE_URL": database_url,
            "CO_DATA_DIR": str(tmp_path / "data"),
            "CO_STRATEGIES_DIR": str(strategies_dir),
            "CO_BACKTEST_WORKERS": "0",
            "CO_SYNTHETIC_DATA": "false",
            "CO_LOG_LEVEL": "INFO",
            "CO_LOG_JSON": "false",
        }
        log = tmp_path / f"worker-{len(workers)}.log"
        command = [sys.executable, "-m", "cryptoorchestrator", "worker", "--concurrency", str(concurrency)]
        command += ["--loglevel", "info", "--heartbeat-seconds", str(HEARTBEAT)]
        with log.open("wb") as sink:
            process = subprocess.Popen(
                command, env=env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        worker = Worker(process, log)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
async def api(
    app_factory: Any, strategies_dir: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Any, ApiUser]]:
    app, container = await app_factory(
        jobs_backend="celery",
        redis_url=REDIS_URL,
        synthetic_data=True,
        synthetic_symbols=["BTC/USDT"],
        strategies_dir=strategies_dir,
        backtest_workers=0,
    )
    assert isinstance(container.job_queue, CeleryJobQueue)
    async with client_for(app) as http:
        user = await register_user(http, "quant")
        yield http, container, user


async def submit(http: httpx.AsyncClient, user: ApiUser, strategy: dict[str, Any]) -> str:
    created = await http.post("/api/v1/backtests", headers=user.headers, json={**BODY, "strategy": strategy})
    assert created.status_code == 201, created.text
    job_id: str = created.json()["job_id"]
    return job_id


async def wait_for(
    http: httpx.AsyncClient, user: ApiUser, job_id: str, statuses: set[str], worker: Worker, *, within: float
) -> dict[str, Any]:
    """Poll GET /jobs/{id} until its status is one of ``statuses`` (at most ``within`` seconds)."""
    alive = worker.process.poll() is None
    deadline = time.monotonic() + within
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await http.get(f"/api/v1/jobs/{job_id}", headers=user.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in statuses:
            return body
        assert not alive or worker.process.poll() is None, f"the worker exited:\n{worker.output()}"
        await asyncio.sleep(0.2)
    pytest.fail(f"job {job_id} still {body.get('status')} after {within}s; worker log:\n{worker.output()}")


async def test_worker_runs_a_backtest_to_success(api, start_worker) -> None:
    http, _container, user = api
    worker = start_worker()
    job_id = await submit(http, user, SMA)

    job = await wait_for(http, user, job_id, {"succeeded", "failed", "canceled"}, worker, within=45)

    assert job["status"] == "succeeded", (job, worker.output())
    assert job["progress_percent"] == 100
    assert job["result"]["trades"] >= 0 and job["result"]["final_equity"]
    backtest = (
        await http.get(f"/api/v1/backtests/{job['result']['backtest_id']}", headers=user.headers)
    ).json()
    assert backtest["status"] == "succeeded" and backtest["summary"]["candles"] == 2160
    assert "total_return" in backtest["metrics"]


@pytest.mark.parametrize("concurrency", [1, 2], ids=["solo", "prefork"])
async def test_canceling_a_running_job_ends_canceled(api, start_worker, concurrency: int) -> None:
    http, _container, user = api
    worker = start_worker(concurrency=concurrency)
    job_id = await submit(http, user, SLOW)
    await wait_for(http, user, job_id, {"running"}, worker, within=30)

    canceled = await http.delete(f"/api/v1/jobs/{job_id}", headers=user.headers)
    assert canceled.status_code == 200, canceled.text

    job = await wait_for(http, user, job_id, {"canceled", "succeeded", "failed"}, worker, within=15)
    assert job["status"] == "canceled", job
    assert job["message"] == "Canceled." and job["finished_at"]
    # The worker survives a cancellation and runs the next job.
    next_id = await submit(http, user, SMA)
    done = await wait_for(http, user, next_id, {"succeeded", "failed", "canceled"}, worker, within=45)
    assert done["status"] == "succeeded", (done, worker.output())
    assert "WorkerLostError" not in worker.output()  # the revoke signal did not kill a child


async def test_canceling_a_queued_job_never_runs_it(api, start_worker) -> None:
    http, _container, user = api
    job_id = await submit(http, user, SMA)  # no worker yet: stays queued in Redis
    canceled = await http.delete(f"/api/v1/jobs/{job_id}", headers=user.headers)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    worker = start_worker()
    follow_up = await submit(http, user, SMA)
    await wait_for(http, user, follow_up, {"succeeded"}, worker, within=45)
    job = (await http.get(f"/api/v1/jobs/{job_id}", headers=user.headers)).json()
    assert job["status"] == "canceled" and job["started_at"] is None


async def test_a_killed_worker_leaves_its_job_failed(api, start_worker) -> None:
    http, container, user = api
    worker = start_worker()
    job_id = await submit(http, user, SLOW)
    await wait_for(http, user, job_id, {"running"}, worker, within=30)
    # The API side's sweep, judging by heartbeats alone (as for a worker on another host), with
    # a short timeout; the container's own sweep (10 s, also checks local pids) is stopped.
    await container.job_queue.stop()
    stale_after = timedelta(seconds=3)
    sweeper = CeleryJobQueue(
        container.jobs,
        container.job_queue.app,
        sweep_seconds=0.25,
        stale_after=stale_after,
        is_dead=lambda _: False,
    )
    await sweeper.start()
    try:

        async def heartbeat_at() -> Any:
            async with container.uow_factory() as uow:
                job = await uow.jobs.get(job_id)
            assert job is not None
            return job.heartbeat_at

        # Alive: heartbeats move on and the sweep leaves the job running past the timeout.
        first = await heartbeat_at()
        await asyncio.sleep(stale_after.total_seconds() + 1)
        assert await heartbeat_at() > first
        job = (await http.get(f"/api/v1/jobs/{job_id}", headers=user.headers)).json()
        assert job["status"] == "running", job

        worker.kill()
        killed_at = time.monotonic()
        job = await wait_for(http, user, job_id, {"failed", "succeeded", "canceled"}, worker, within=20)
        elapsed = time.monotonic() - killed_at
    finally:
        await sweeper.stop()
    assert job["status"] == "failed" and job["error"]["code"] == "WORKER_LOST", job
    assert elapsed >= stale_after.total_seconds() - HEARTBEAT - 0.5  # not before the timeout


async def test_the_api_queue_fails_jobs_of_a_dead_worker_on_this_host(api, start_worker) -> None:
    http, container, user = api
    worker = start_worker()
    job_id = await submit(http, user, SLOW)
    await wait_for(http, user, job_id, {"running"}, worker, within=30)
    await container.job_queue.stop()  # its periodic sweep (every 10 s) must not race this one
    worker.kill()
    # Same host, process gone: the sweep knows at once, without waiting for the timeout.
    queue = CeleryJobQueue(container.jobs, container.job_queue.app)
    assert await queue.sweep_orphans() == 1
    job = (await http.get(f"/api/v1/jobs/{job_id}", headers=user.headers)).json()
    assert job["status"] == "failed" and job["error"]["code"] == "WORKER_LOST"
