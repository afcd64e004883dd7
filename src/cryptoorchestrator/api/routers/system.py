"""Health, status and metrics."""

from __future__ import annotations

import platform
import shutil
import time
from datetime import UTC, datetime
from importlib import metadata

import pydantic_core
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cryptoorchestrator.api.deps import AdminDep, ContainerDep
from cryptoorchestrator.bootstrap import Container
from cryptoorchestrator.schemas.system import ComponentHealth, DetailedHealth, Health, Status

root_router = APIRouter(tags=["system"])
router = APIRouter(tags=["system"])


def _health(container: Container) -> Health:
    return Health(
        status="healthy",
        timestamp=datetime.now(UTC),
        uptime=round(time.time() - container.started_at, 3),
        version=container.version,
        environment=container.settings.env.value,
    )


def health_json(version: str, environment: str, now: datetime, uptime: float) -> bytes:
    """``Health`` (healthy) as JSON - the bytes pydantic writes for it - without building the
    model: liveness probes call this often. The fixed tail is encoded once per (version, env)."""
    tail = _HEALTH_TAILS.get((version, environment))
    if tail is None:
        encoded = pydantic_core.to_json({"version": version, "environment": environment}).decode()
        tail = _HEALTH_TAILS[(version, environment)] = "," + encoded[1:]
    stamp = now.isoformat().replace("+00:00", "Z")
    return f'{{"status":"healthy","timestamp":"{stamp}","uptime":{uptime!r}{tail}'.encode()


_HEALTH_TAILS: dict[tuple[str, str], str] = {}


def _health_response(container: Container) -> Response:
    now = datetime.now(UTC)
    uptime = round(now.timestamp() - container.started_at, 3)
    body = health_json(container.version, container.settings.env.value, now, uptime)
    return Response(body, media_type="application/json")


@root_router.get("/health", response_model=Health)
@root_router.get("/healthz", response_model=Health, include_in_schema=False)
async def root_health(request: Request) -> Response:
    """Liveness: the process answers. No authentication."""
    return _health_response(request.app.state.container)


@router.get("/health", response_model=Health)
async def api_health(request: Request) -> Response:
    """Liveness of the API. No authentication."""
    return _health_response(request.app.state.container)


async def _timed(name: str, probe: object) -> ComponentHealth:
    start = time.perf_counter()
    try:
        await probe()  # type: ignore[operator]
    except Exception as exc:  # a failing dependency is reported, not raised
        return ComponentHealth(
            service=name,
            status="unhealthy",
            response_time=round((time.perf_counter() - start) * 1000, 3),
            details={"error": type(exc).__name__},
        )
    return ComponentHealth(
        service=name, status="healthy", response_time=round((time.perf_counter() - start) * 1000, 3)
    )


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("cryptoorchestrator", "fastapi", "sqlalchemy", "pydantic", "ccxt", "pandas", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


@router.get("/health/detailed", response_model=DetailedHealth)
async def detailed_health(admin: AdminDep, container: ContainerDep, request: Request) -> DetailedHealth:
    """Readiness with every dependency: database, Redis, disk (admin only)."""
    services = [await _timed("database", container.ping_database)]
    limiter = request.app.state.limiter
    if container.settings.redis_url:
        services.append(await _timed("redis", limiter.ping))
    else:
        services.append(
            ComponentHealth(service="redis", status="disabled", details={"reason": "CO_REDIS_URL unset"})
        )
    data_dir = container.settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    disk = shutil.disk_usage(data_dir)
    disk_percent = round(disk.used / disk.total * 100, 1) if disk.total else 0.0
    disk_status = "healthy" if disk.free > 1024**3 else "degraded"
    services.append(
        ComponentHealth(
            service="disk",
            status=disk_status,
            details={"path": str(data_dir.resolve()), "free_bytes": disk.free, "used_percent": disk_percent},
        )
    )
    worst = "healthy"
    if any(s.status == "unhealthy" for s in services):
        worst = "unhealthy"
    elif any(s.status == "degraded" for s in services):
        worst = "degraded"
    base = _health(container)
    return DetailedHealth(
        **{**base.model_dump(), "status": worst},
        services=services,
        system_metrics={
            "disk_usage": {
                "total": disk.total,
                "used": disk.used,
                "free": disk.free,
                "percent": disk_percent,
            },
            "platform": platform.platform(),
        },
        versions=_versions(),
    )


@router.get("/status", response_model=Status)
async def status(container: ContainerDep) -> Status:
    settings = container.settings
    try:
        await container.ping_database()
        state = "operational"
    except Exception:
        state = "degraded"
    return Status(
        status=state,  # type: ignore[arg-type]
        version=container.version,
        environment=settings.env.value,
        timestamp=datetime.now(UTC),
        uptime=round(time.time() - container.started_at, 3),
        api_versions=["v1"],
        database="sqlite" if settings.resolved_database_url.startswith("sqlite") else "postgresql",
        jobs_backend="in-process",
        rate_limit_storage="redis" if settings.redis_url else "memory",
    )


@root_router.get("/metrics", include_in_schema=True, response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text: requests and latency by route, requests in flight."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
