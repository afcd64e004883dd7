"""The Celery backend's configuration and refusals (no Redis server needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cryptoorchestrator.bootstrap import build_container
from cryptoorchestrator.core.errors import ConfigurationError
from cryptoorchestrator.jobs.celery_app import QUEUE_NAME, TASK_NAME, make_celery
from cryptoorchestrator.jobs.celery_queue import CeleryJobQueue
from cryptoorchestrator.jobs.inprocess import InProcessJobQueue
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


def test_make_celery_refuses_without_a_redis_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CO_REDIS_URL"):
        make_celery(make_settings(tmp_path, jobs_backend="celery"))


def test_make_celery_settings(tmp_path: Path) -> None:
    app = make_celery(make_settings(tmp_path, redis_url="redis://127.0.0.1:6379/14"))
    conf = app.conf
    assert conf.broker_url == "redis://127.0.0.1:6379/14"
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_acks_late is True and conf.worker_prefetch_multiplier == 1
    assert conf.task_default_queue == QUEUE_NAME
    assert TASK_NAME in app.tasks
    with pytest.raises(ConfigurationError, match="container factory"):
        app.tasks[TASK_NAME].run("any-job")  # the API side's app cannot run jobs


async def test_bootstrap_chooses_the_queue_by_jobs_backend(tmp_path: Path) -> None:
    default = build_container(make_settings(tmp_path))
    celery = build_container(
        make_settings(tmp_path, jobs_backend="celery", redis_url="redis://127.0.0.1:1/0")
    )
    try:
        assert isinstance(default.job_queue, InProcessJobQueue)
        assert isinstance(celery.job_queue, CeleryJobQueue)
    finally:
        await default.engine.dispose()
        await celery.engine.dispose()
    with pytest.raises(ConfigurationError, match="CO_REDIS_URL"):
        build_container(make_settings(tmp_path, jobs_backend="celery"))


def test_worker_command_refuses_without_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CO_")}
    env["CO_DATA_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "cryptoorchestrator", "worker"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "CO_REDIS_URL is not set" in result.stderr
