"""Registry tasks: a head training job (queue `training`), reference features (queue `attribution`)."""

from __future__ import annotations

from celery import shared_task

from webapp.common.tasks import task_send_on_commit
from webapp.feedback.services.field import FIELD_PREDICTIONS_TASK
from webapp.registry.services.references import reference_features_compute
from webapp.registry.services.training import training_job_run, training_jobs_sweep
from workers import test_gate
from workers.runtime import get_backbone, get_feature_cache

__all__ = ["compute_reference_features", "sweep_training_jobs", "train_head"]


@shared_task(name="workers.tasks.train_head")
def train_head(job_id: int) -> str:
    """Run one training job; the job records its own failure, so the task never retries."""
    test_gate.hold("training", [job_id])
    job = training_job_run(job_id=job_id, backbone=get_backbone(), cache=get_feature_cache())
    if job.head_version_id is not None:
        # The new head's field accuracy: its predictions on the images analysts have confirmed.
        task_send_on_commit(FIELD_PREDICTIONS_TASK, job.head_version_id)
    return str(job.status)


@shared_task(
    name="workers.tasks.compute_reference_features",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=3,
)
def compute_reference_features(reference_ids: list[int]) -> int:
    """Fill the feature cache for new reference images (a training computes any that are still missing)."""
    return reference_features_compute(
        reference_ids=reference_ids, backbone=get_backbone(), cache=get_feature_cache()
    )


@shared_task(name="workers.tasks.sweep_training_jobs")
def sweep_training_jobs() -> dict[str, list[int]]:
    """Periodic (beat): send queued jobs again, fail those whose worker died."""
    return training_jobs_sweep()
