"""Attribution tasks (queue `attribution`). The workers' status answer to a broadcast is `workers.status`."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from webapp.registry.selectors import head_version_active
from webapp.submissions.services import submissions_sweep_stale, verdict_create_batch
from workers import runtime, test_gate
from workers.batching import GroupedTask, SimpleRequest

__all__ = ["attribute_submission", "sweep_stale_submissions"]

logger = logging.getLogger(__name__)


DATABASE_RETRIES = 5  # sends of a group whose database was away, before the sweep takes over


@shared_task(
    base=GroupedTask,
    name="workers.tasks.attribute_submission",
    acks_late=True,
    flush_every=settings.ATTRIBUTION_GROUP_SIZE,
    flush_interval=settings.ATTRIBUTION_BATCH_WINDOW_MS / 1000,
)
def attribute_submission(requests: list[SimpleRequest]) -> int:
    """Attribute the submissions of a group of messages (one id each) with the active head, in forward
    passes of the worker's batch size (`runtime.batch_size()`). Sent as `attribute_submission.delay(id)`."""
    submission_ids = [int(request.args[0]) for request in requests]
    started = time.perf_counter()
    try:
        count = _attribute_group(submission_ids)
    except (OperationalError, InterfaceError):
        # The database away for a moment: send the ids again a little later; the claims make a
        # repeat harmless, and the sweep catches whatever is still queued after that.
        retries = max(int(request.kwargs.get("retries", 0)) for request in requests)
        if retries >= DATABASE_RETRIES:
            raise
        logger.warning("database unavailable: submissions %s are sent again", submission_ids, exc_info=True)
        for submission_id in submission_ids:
            attribute_submission.apply_async(
                (submission_id,), {"retries": retries + 1}, countdown=min(2**retries, 60)
            )
        return 0
    seconds = time.perf_counter() - started
    if count:
        runtime.throughput.record(count, seconds)
        logger.info(
            "attributed %d of %d submissions in %.2f s (%.1f images/s, %.1f since start) on %s, batch size %d",
            count, len(submission_ids), seconds, count / seconds, runtime.throughput.images_per_s,
            runtime.get_backbone().device, runtime.batch_size(),
        )
    return count


def _attribute_group(submission_ids: list[int]) -> int:
    head = head_version_active()
    if head is None:
        # Not a failure: they stay queued, and the sweep sends them again after an activation.
        logger.warning("no active head version: submissions %s stay queued", submission_ids)
        return 0
    loaded = runtime.load_attributor(
        head_version_id=head.pk, version=head.version, artifact_name=head.artifact.name or ""
    )
    verdicts = verdict_create_batch(
        submission_ids=submission_ids,
        head_version=head,
        attributor=loaded.attributor,
        feature_cache=test_gate.feature_cache(runtime.get_feature_cache(), submission_ids),
        batch_size=runtime.batch_size(),
        loader_threads=settings.ATTRIBUTION_LOADER_THREADS,
    )
    return len(verdicts)


@shared_task(name="workers.tasks.sweep_stale_submissions")
def sweep_stale_submissions() -> int:
    """Re-queue submissions a lost message or a dead worker left queued or processing (beat runs it)."""
    return len(submissions_sweep_stale())
