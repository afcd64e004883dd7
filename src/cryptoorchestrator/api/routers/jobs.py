"""/jobs: the caller's own background jobs."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

from cryptoorchestrator.api.deps import ContainerDep, PageDep, PrincipalDep
from cryptoorchestrator.domain.jobs import Job
from cryptoorchestrator.schemas.common import ERROR_RESPONSES, Page
from cryptoorchestrator.schemas.jobs import JobOut

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=ERROR_RESPONSES)


def job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        kind=job.kind,
        status=job.status.value,  # type: ignore[arg-type]
        progress_percent=job.progress_percent,
        message=job.message,
        params=job.params,
        result=job.result,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


@router.get("", response_model=Page[JobOut])
async def list_jobs(
    principal: PrincipalDep,
    container: ContainerDep,
    page: PageDep,
    status_filter: Annotated[
        Literal["queued", "running", "succeeded", "failed", "canceled"] | None, Query(alias="status")
    ] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[JobOut]:
    jobs, total = await container.jobs.list(
        principal.user.id, limit=page.limit, offset=page.offset, status=status_filter, kind=kind
    )
    return Page(items=[job_out(job) for job in jobs], total=total, limit=page.limit, offset=page.offset)


@router.get("/{job_id}", response_model=JobOut)
async def get_job(job_id: str, principal: PrincipalDep, container: ContainerDep) -> JobOut:
    return job_out(await container.jobs.get(principal.user.id, job_id))


@router.delete("/{job_id}", response_model=JobOut, responses={204: {"description": "Deleted"}})
async def cancel_or_delete_job(
    job_id: str, principal: PrincipalDep, container: ContainerDep
) -> Response | JobOut:
    """Cancel a queued or running job (answers the job, now canceled), or delete a finished one (204)."""
    job = await container.jobs.cancel_or_delete(principal.user.id, job_id)
    if job is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return job_out(job)
