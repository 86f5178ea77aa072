"""Attribution tasks (queue `attribution`) and the workers' status answer to a broadcast."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.worker.control import control_command
from django.db import InterfaceError, OperationalError

from webapp.registry.selectors import head_version_active
from webapp.submissions.services import submissions_sweep_stale, verdict_create_batch
from workers import runtime

__all__ = ["attribute_submissions", "sweep_stale_submissions", "worker_status"]

logger = logging.getLogger(__name__)


@shared_task(
    name="workers.tasks.attribute_submissions",
    acks_late=True,
    # The database away for a moment: try again later; the claim makes a repeat harmless.
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def attribute_submissions(submission_ids: list[int]) -> int:
    """Attribute a group of submissions in one forward pass with the active head."""
    head = head_version_active()
    if head is None:
        # Not a failure: they stay queued, and the sweep sends them again after an activation.
        logger.warning("no active head version: submissions %s stay queued", submission_ids)
        return 0
    loaded = runtime.load_attributor(
        head_version_id=head.pk, version=head.version, artifact_name=head.artifact.name
    )
    verdicts = verdict_create_batch(
        submission_ids=submission_ids,
        head_version=head,
        attributor=loaded.attributor,
        feature_cache=runtime.get_feature_cache(),
    )
    return len(verdicts)


@shared_task(name="workers.tasks.sweep_stale_submissions")
def sweep_stale_submissions() -> int:
    """Re-queue submissions a lost message or a dead worker left queued or processing (beat runs it)."""
    return len(submissions_sweep_stale())


@control_command()
def worker_status(state: Any) -> dict[str, Any]:
    """`app.control.broadcast("worker_status", reply=True)`: this process's device, backbone and head."""
    loaded = runtime.get_backbone.cache_info().currsize > 0
    config = runtime.backbone_config_from_settings()
    return {
        "device": str(runtime.get_backbone().device) if loaded else runtime.device_from_settings(),
        "backbone": runtime.get_backbone().identity if loaded else f"{config.model_name} (not loaded yet)",
        "pretrained": runtime.get_backbone().pretrained if loaded else config.pretrained is not None,
        "head_version": runtime.loaded_head_version(),
    }
