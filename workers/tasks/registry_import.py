"""Bulk reference import from an uploaded archive (queue `training`: long, CPU-bound, no model)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from webapp.registry.services.imports import import_job_run, import_jobs_sweep

__all__ = ["registry_import", "sweep_import_jobs"]


# A large archive takes longer than the default task time limit: its own limit (the sweep fails a job
# running past it). A second delivery of the message finds the job running and does nothing.
@shared_task(
    name="workers.tasks.registry_import",
    time_limit=settings.IMPORT_TIME_LIMIT_S,
    soft_time_limit=settings.IMPORT_TIME_LIMIT_S - 60,
)
def registry_import(job_id: int) -> str:
    """Run one import job; the job records its own failure, so the task never retries."""
    return str(import_job_run(job_id=job_id).status)


@shared_task(name="workers.tasks.sweep_import_jobs")
def sweep_import_jobs() -> dict[str, list[int]]:
    """Periodic (beat): send queued import jobs again, fail those whose worker died."""
    return import_jobs_sweep()
