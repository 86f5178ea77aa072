"""Field predictions for a head's field accuracy (queue `training`: a backlog of confirmed images must not
hold up the analysts' verdicts on the `attribution` queue)."""

from __future__ import annotations

import logging

from celery import shared_task

from attribution.artifact import HeadMismatchError
from webapp.feedback.selectors.field import field_heads, field_submissions_awaiting_prediction
from webapp.feedback.services.field import field_predictions_fill
from webapp.registry.models import HeadVersion
from workers import runtime

__all__ = ["fill_field_predictions"]

logger = logging.getLogger(__name__)


@shared_task(name="workers.tasks.fill_field_predictions")
def fill_field_predictions(head_version_id: int | None = None) -> int:
    """Field predictions of one head version (sent when a training makes a head), or of the candidate and
    the active head (periodic, beat). A head this worker cannot load (another backbone, a missing artifact)
    is logged and skipped. Returns how many predictions were stored."""
    if head_version_id is None:
        heads = field_heads()
    else:
        heads = list(HeadVersion.objects.filter(pk=head_version_id))
    stored = 0
    for head in heads:
        if not field_submissions_awaiting_prediction(head_version=head):
            continue  # nothing to compute: no need to load the head
        try:
            loaded = runtime.load_attributor(
                head_version_id=head.pk, version=head.version, artifact_name=head.artifact.name or ""
            )
        except (HeadMismatchError, FileNotFoundError) as error:
            logger.warning("no field predictions for head v%s: %s", head.version, error)
            continue
        stored += field_predictions_fill(
            head_version=head,
            attributor=loaded.attributor,
            feature_cache=runtime.get_feature_cache(),
            batch_size=runtime.batch_size(),
        )
    return stored
