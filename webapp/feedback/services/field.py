"""Field predictions: what a head version says of the confirmed images it never judged, computed on a worker
so that every head's field accuracy is measured on the same confirmed images (`selectors.field`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from django.conf import settings

from attribution.features import FeatureCache, concat_blocks, extract_features
from webapp.feedback.models import FieldPrediction
from webapp.feedback.selectors.field import field_submissions_awaiting_prediction
from webapp.registry.models import HeadVersion
from webapp.submissions.models import Submission
from webapp.submissions.services import feature_cache_key, stored_image_open

if TYPE_CHECKING:
    from attribution.predict import Attributor

logger = logging.getLogger(__name__)

FIELD_PREDICTIONS_TASK = "workers.tasks.fill_field_predictions"


def _predict_group(
    *,
    head_version: HeadVersion,
    attributor: Attributor,
    feature_cache: FeatureCache | None,
    submissions: Sequence[Submission],
    batch_size: int,
) -> int:
    blocks = attributor.blocks
    unreadable: dict[int, Exception] = {}
    features = extract_features(
        attributor.backbone,
        [partial(stored_image_open, submission) for submission in submissions],
        blocks,
        sha256s=[feature_cache_key(submission) for submission in submissions],
        cache=feature_cache,
        batch_size=batch_size,
        failures=unreadable,
    )
    for row, error in unreadable.items():
        logger.warning(
            "field prediction of head v%s skips submission %s: its stored image could not be read: %r",
            head_version.version,
            submissions[row].pk,
            error,
        )
    readable = [row for row in range(len(submissions)) if row not in unreadable]
    if not readable:
        return 0
    attributions = attributor.attribute_features(concat_blocks(features, blocks)[readable])
    predictions = [
        FieldPrediction(
            head_version=head_version,
            submission=submissions[row],
            label=result.label,
            decision=result.decision,
            score=float(result.score),
        )
        for row, result in zip(readable, attributions, strict=True)
    ]
    # A second run at the same time (the periodic one beside the one after a training) makes the same rows.
    FieldPrediction.objects.bulk_create(predictions, ignore_conflicts=True)
    return len(predictions)


def field_predictions_fill(
    *,
    head_version: HeadVersion,
    attributor: Attributor,
    feature_cache: FeatureCache | None,
    batch_size: int | None = None,
) -> int:
    """Give `head_version` a field prediction for every confirmed image it has neither a verdict nor a
    prediction for (`attributor` is that head, loaded on a worker), in groups of `batch_size` images
    through the submissions' per-team feature cache. An unreadable image is logged and skipped (the next
    run tries it again). Returns how many predictions were stored."""
    pending = field_submissions_awaiting_prediction(head_version=head_version)
    size = batch_size or settings.ATTRIBUTION_BATCH_SIZE or 32
    stored = 0
    for start in range(0, len(pending), size):
        submissions = list(Submission.objects.filter(pk__in=pending[start : start + size]).order_by("id"))
        if submissions:
            stored += _predict_group(
                head_version=head_version,
                attributor=attributor,
                feature_cache=feature_cache,
                submissions=submissions,
                batch_size=size,
            )
    if pending:
        logger.info("head v%s: %d field predictions of %d confirmed images", head_version.version, stored, len(pending))
    return stored
