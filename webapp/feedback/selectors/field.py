"""Reads of a head version's field accuracy: how its predictions fare on the images analysts confirmed.

Truth comes from `Confirmation`: a confirmation whose label (or registered generator) is one of the head's
classes is a known sample, right when the head names that class and does not reject the image as unknown;
any other truth (a generator named in words, "from an unregistered source", a registered generator the head
was not trained on) is an unknown sample, right when the head rejects it as unknown_generator. A disputed
confirmation without a label says only that the verdict was wrong: it is left out.

Each image counts once (an image confirmed on several submissions, a duplicate upload or another team's,
counts with its latest confirmation), and an image the head was trained on (a reference promoted from a
confirmed submission) is left out: it would measure the head on its own training set.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from webapp.feedback.models import FieldPrediction
from webapp.registry.models import HeadVersion
from webapp.registry.selectors import head_version_active, head_version_candidate
from webapp.submissions.models import Confirmation, Verdict

# Confirmations of a head's known classes (or of images it should reject) from which its field figure is
# trusted over cross-validation on the references; below that, the interval is too wide to rank heads by.
FIELD_MIN_CONFIRMED = 30
# The normal quantile of a two-sided 95 % interval.
Z_95 = 1.959963984540054
UNKNOWN = "unknown_generator"
_CHUNK = 900  # ids per IN (...) query: under SQLite's oldest limit on query parameters


def wilson_interval(successes: int, n: int, *, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a binomial proportion (95 % by default); None when n is 0. Unlike the
    normal approximation it stays inside [0, 1] and is not empty at 0 or n successes."""
    if n <= 0:
        return None
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class ClassCount:
    """A known class's confirmed images and how many of them the head named right."""

    label: str
    n: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n if self.n else None


@dataclass(frozen=True)
class FieldMetrics:
    """A head version's figures on the analysts' confirmations. Fractions and intervals are None when
    their sample is empty; `confirmed` = `known_n` + `unknown_n` (the images with truth and the head's
    prediction)."""

    head_version: int
    confirmed: int
    known_n: int
    known_correct: int
    unknown_n: int
    unknown_rejected: int
    disputed_unlabelled: int
    awaiting_prediction: int
    in_training_set: int
    per_class: list[ClassCount] = field(default_factory=list)
    min_confirmed: int = FIELD_MIN_CONFIRMED

    @property
    def accuracy(self) -> float | None:
        return self.known_correct / self.known_n if self.known_n else None

    @property
    def accuracy_ci(self) -> tuple[float, float] | None:
        return wilson_interval(self.known_correct, self.known_n)

    @property
    def unknown_rejection(self) -> float | None:
        return self.unknown_rejected / self.unknown_n if self.unknown_n else None

    @property
    def unknown_rejection_ci(self) -> tuple[float, float] | None:
        return wilson_interval(self.unknown_rejected, self.unknown_n)

    @property
    def enough_for_accuracy(self) -> bool:
        return self.known_n >= self.min_confirmed

    @property
    def enough_for_unknown_rejection(self) -> bool:
        return self.unknown_n >= self.min_confirmed

    def as_dict(self) -> dict[str, Any]:
        """The API's answer (GET /api/v1/heads/{version}/field-metrics/)."""
        accuracy_ci, rejection_ci = self.accuracy_ci, self.unknown_rejection_ci
        return {
            "head_version": self.head_version,
            "confirmed": self.confirmed,
            "accuracy": self.accuracy,
            "accuracy_ci": list(accuracy_ci) if accuracy_ci else None,
            "unknown_rejection": self.unknown_rejection,
            "unknown_rejection_ci": list(rejection_ci) if rejection_ci else None,
            "known_n": self.known_n,
            "known_correct": self.known_correct,
            "unknown_n": self.unknown_n,
            "unknown_rejected": self.unknown_rejected,
            "disputed_unlabelled": self.disputed_unlabelled,
            "awaiting_prediction": self.awaiting_prediction,
            "in_training_set": self.in_training_set,
            "min_confirmed": self.min_confirmed,
            "enough_for_accuracy": self.enough_for_accuracy,
            "enough_for_unknown_rejection": self.enough_for_unknown_rejection,
            "per_class": [
                {"label": c.label, "n": c.n, "correct": c.correct, "accuracy": c.accuracy} for c in self.per_class
            ],
        }


@dataclass(frozen=True)
class _Sample:
    """One confirmed image as a head sees it: `submission_id` is the submission that carries the image's
    verdicts (the original of a duplicate); `truth` is one of the head's classes, or "" for unknown."""

    submission_id: int
    known: bool
    truth: str


@dataclass(frozen=True)
class _Samples:
    samples: list[_Sample]
    disputed_unlabelled: int
    in_training_set: int


def _truth(*, status: str, label: str, generator_slug: str | None, classes: set[str]) -> tuple[bool, str] | None:
    """(known, class) for a confirmation, or None for a disputed one that names nothing."""
    if status == Confirmation.Status.DISPUTED and not label and not generator_slug:
        return None
    # The label first: it keeps the slug the analyst chose even if the generator was renamed since (a head
    # trained before the rename knows the old slug).
    for name in (label, generator_slug):
        if name and name in classes:
            return True, name
    return False, ""


def _field_samples(*, head_version: HeadVersion) -> _Samples:
    """Every confirmed image with a truth for this head: one query for the confirmations."""
    rows = Confirmation.objects.values_list(
        "submission_id",
        "submission__duplicate_of_id",
        "submission__sha256",
        "status",
        "label",
        "generator__slug",
        "updated_at",
    )
    latest: dict[str, tuple[datetime, int, tuple[Any, ...]]] = {}
    for row in rows:
        submission_id, _, sha256, *_rest, updated_at = row
        seen = latest.get(sha256)
        if seen is None or (updated_at, submission_id) > seen[:2]:
            latest[sha256] = (updated_at, submission_id, row)
    trained_on = {str(item.get("sha256")) for item in head_version.manifest or [] if isinstance(item, dict)}
    classes = set(head_version.classes)
    samples, disputed_unlabelled, in_training_set = [], 0, 0
    for _, _, (submission_id, original_id, sha256, status, label, slug, _) in latest.values():
        truth = _truth(status=status, label=label, generator_slug=slug, classes=classes)
        if truth is None:
            disputed_unlabelled += 1
        elif sha256 in trained_on:
            in_training_set += 1
        else:
            samples.append(_Sample(submission_id=original_id or submission_id, known=truth[0], truth=truth[1]))
    samples.sort(key=lambda sample: sample.submission_id)
    return _Samples(samples, disputed_unlabelled, in_training_set)


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _predictions(*, head_version: HeadVersion, submission_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """submission id -> (label, decision) of the head's verdict, else of its field prediction."""
    columns = ("submission_id", "label", "decision")
    found: dict[int, tuple[str, str]] = {}
    for chunk in _chunks(submission_ids):
        verdicts = Verdict.objects.filter(head_version=head_version, submission_id__in=chunk)
        found |= {pk: (label, decision) for pk, label, decision in verdicts.values_list(*columns)}
    missing = [pk for pk in submission_ids if pk not in found]
    for chunk in _chunks(missing):
        predictions = FieldPrediction.objects.filter(head_version=head_version, submission_id__in=chunk)
        found |= {pk: (label, decision) for pk, label, decision in predictions.values_list(*columns)}
    return found


def head_version_field_metrics(*, head_version: HeadVersion) -> FieldMetrics:
    """The head's accuracy on confirmed images of its known classes and its rejection of confirmed images
    of other origins, with Wilson 95 % intervals. A confirmed image the head has neither a verdict nor a
    field prediction for yet is counted in `awaiting_prediction` (a worker fills those in)."""
    found = _field_samples(head_version=head_version)
    keys = sorted({sample.submission_id for sample in found.samples})
    predictions = _predictions(head_version=head_version, submission_ids=keys)
    per_class = {label: [0, 0] for label in head_version.classes}
    known_n = known_correct = unknown_n = unknown_rejected = awaiting = 0
    for sample in found.samples:
        prediction = predictions.get(sample.submission_id)
        if prediction is None:
            awaiting += 1
            continue
        label, decision = prediction
        if sample.known:
            right = decision != UNKNOWN and label == sample.truth
            known_n, known_correct = known_n + 1, known_correct + right
            per_class[sample.truth][0] += 1
            per_class[sample.truth][1] += right
        else:
            unknown_n, unknown_rejected = unknown_n + 1, unknown_rejected + (decision == UNKNOWN)
    return FieldMetrics(
        head_version=head_version.version,
        confirmed=known_n + unknown_n,
        known_n=known_n,
        known_correct=known_correct,
        unknown_n=unknown_n,
        unknown_rejected=unknown_rejected,
        disputed_unlabelled=found.disputed_unlabelled,
        awaiting_prediction=awaiting,
        in_training_set=found.in_training_set,
        per_class=[ClassCount(label, n, correct) for label, (n, correct) in per_class.items()],
    )


def field_heads() -> list[HeadVersion]:
    """The heads whose field predictions the periodic fill keeps up to date: the candidate (if any), then
    the active head (last, so that a worker keeps it loaded for the next verdicts)."""
    return [head for head in (head_version_candidate(), head_version_active()) if head is not None]


def field_submissions_awaiting_prediction(*, head_version: HeadVersion) -> list[int]:
    """Ids of the submissions (originals of duplicates) whose confirmed image this head has neither a
    verdict nor a field prediction for: what `field_predictions_fill` computes."""
    keys = sorted({sample.submission_id for sample in _field_samples(head_version=head_version).samples})
    predictions = _predictions(head_version=head_version, submission_ids=keys)
    return [pk for pk in keys if pk not in predictions]


# --- the head pages' comparison ---------------------------------------------------------------------------

FIELD_ROWS = (
    ("accuracy", "Field accuracy (analysts' confirmations)", "known_n"),
    ("unknown_rejection", "Field unknown rejection (analysts' confirmations)", "unknown_n"),
)


def _figure(metrics: FieldMetrics | None, key: str, n_key: str) -> dict[str, Any] | None:
    if metrics is None:
        return None
    value = getattr(metrics, key)
    return {"value": value, "ci": getattr(metrics, f"{key}_ci"), "n": getattr(metrics, n_key)}


def head_version_field_rows(
    *,
    active: HeadVersion | None,
    candidate: HeadVersion | None,
    metrics: dict[int, FieldMetrics] | None = None,
) -> list[dict[str, Any]]:
    """The field figures of the active head and a candidate side by side (value, interval, n) with the
    difference, for the comparison table; `metrics` (head version pk -> figures) saves computing them twice.
    The difference is `significant` when the two intervals do not overlap."""
    known = dict(metrics or {})
    for head in (active, candidate):
        if head is not None and head.pk not in known:
            known[head.pk] = head_version_field_metrics(head_version=head)
    left = known[active.pk] if active is not None else None
    right = known[candidate.pk] if candidate is not None else None
    rows = []
    for key, label, n_key in FIELD_ROWS:
        a, c = _figure(left, key, n_key), _figure(right, key, n_key)
        delta = significant = None
        if a is not None and c is not None and a["value"] is not None and c["value"] is not None:
            delta = c["value"] - a["value"]
            significant = a["ci"][1] < c["ci"][0] or c["ci"][1] < a["ci"][0]
        rows.append(
            {"key": key, "label": label, "active": a, "candidate": c, "delta": delta, "significant": significant}
        )
    return rows
