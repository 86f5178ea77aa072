"""Writes of the registry: generators, reference images, training jobs, head activation, re-attribution.

The engine (backbone, feature cache) is passed in by the caller, a worker task or a management command,
so the web process never loads a model; tasks are sent by name after the transaction commits.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Count, Max
from django.utils import timezone

from webapp.audit.services import audit_record
from webapp.cases.models import Case
from webapp.registry.models import Generator, HeadVersion, ReferenceImage, TrainingJob
from webapp.registry.selectors import head_version_active, reference_images_for_training, training_job_current
from webapp.submissions.models import Submission
from webapp.submissions.services import submissions_requeue
from webapp.submissions.validation import (
    UploadRejected,
    display_name,
    upload_count_validate,
    upload_validate,
)
from webapp.teams.models import Team

if TYPE_CHECKING:
    from attribution.backbone import Backbone
    from attribution.features import FeatureCache
    from attribution.training import TrainConfig

logger = logging.getLogger(__name__)

Actor: TypeAlias = AbstractBaseUser | AnonymousUser | None
REAL_DEFAULTS = {
    "name": "Real photograph",
    "family": Generator.Family.REAL,
    "description": "Photographs taken with a camera. Built in: it cannot be renamed or deleted.",
    "builtin": True,
    "is_active": True,
}
COMPARED_METRICS = ("accuracy", "auroc", "oscr")
_PROGRESS_SAVE_INTERVAL_S = 0.5
_CANCEL_CHECK_INTERVAL_S = 0.25


class RegistryError(ValueError):
    """A registry request that cannot be carried out; the message says why, for the user."""


class TrainingAlreadyRunning(RegistryError):
    def __init__(self, job: TrainingJob) -> None:
        self.job = job
        super().__init__(
            f"Training job {job.pk} is already {job.status} (requested {job.created_at:%Y-%m-%d %H:%M} UTC"
            f"{f' by {job.requested_by}' if job.requested_by else ''}): one training runs at a time. "
            "Wait for it to finish, or cancel it."
        )


def _batched(items: Sequence[int], size: int) -> list[list[int]]:
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def _send_task(name: str, *args: Any) -> None:
    """Queue a task by name once the current transaction commits (a rollback leaves no task behind)."""
    from workers.celery import app

    transaction.on_commit(lambda: app.send_task(name, args=list(args)))


# --- generators -------------------------------------------------------------------------------------


def generator_ensure_real() -> Generator:
    """The built-in "real" class (a data migration makes it; this restores it after a database flush)."""
    generator, _ = Generator.objects.get_or_create(slug=Generator.REAL_SLUG, defaults=REAL_DEFAULTS)
    return generator


def generator_create(
    *,
    actor: Actor,
    name: str,
    slug: str,
    family: str,
    description: str = "",
    release: str = "",
    is_active: bool = True,
) -> Generator:
    generator = Generator(
        name=name, slug=slug, family=family, description=description, release=release, is_active=is_active
    )
    generator.full_clean()
    generator.save()
    audit_record(actor=actor, action="generator_create", target=generator, detail={"slug": slug})
    return generator


def generator_update(
    *,
    actor: Actor,
    generator: Generator,
    name: str | None = None,
    slug: str | None = None,
    family: str | None = None,
    description: str | None = None,
    release: str | None = None,
    is_active: bool | None = None,
) -> Generator:
    """Change the given fields; the built-in "real" keeps its name, slug, family and active flag."""
    changes = {
        key: value
        for key, value in {
            "name": name,
            "slug": slug,
            "family": family,
            "description": description,
            "release": release,
            "is_active": is_active,
        }.items()
        if value is not None and getattr(generator, key) != value
    }
    if generator.builtin and changes.keys() & {"name", "slug", "family", "is_active"}:
        raise RegistryError(f'"{generator.name}" is built in: only its description and release can change.')
    for key, value in changes.items():
        setattr(generator, key, value)
    if changes:
        generator.full_clean()
        generator.save()
        audit_record(
            actor=actor, action="generator_update", target=generator, detail={"changed": sorted(changes)}
        )
    return generator


def generator_delete(*, actor: Actor, generator: Generator) -> None:
    """Delete a generator and its reference images (heads trained on it keep their own copy)."""
    if generator.builtin:
        raise RegistryError(f'"{generator.name}" is built in and cannot be deleted.')
    names = list(generator.references.values_list("image", flat=True))
    audit_record(actor=actor, action="generator_delete", target=generator, detail={"slug": generator.slug})
    generator.delete()
    transaction.on_commit(lambda: [default_storage.delete(name) for name in names])


# --- reference images -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceUpload:
    """What became of one uploaded file: a new reference, a duplicate of one, or a rejection."""

    name: str
    reference: ReferenceImage | None
    created: bool
    error: str = ""


def reference_image_create(
    *, generator: Generator, upload: File, uploaded_by: Actor, enqueue: bool = True
) -> tuple[ReferenceImage, bool]:
    """Check, hash and store one reference image; an image the generator already has is returned as is.

    Raises `UploadRejected` (message for the user) when the file fails the submissions' upload checks.
    With `enqueue`, its features are computed on a worker after commit.
    """
    checked = upload_validate(uploaded_file=upload)
    existing = generator.references.filter(sha256=checked.sha256).first()
    if existing is not None:
        return existing, False
    reference = ReferenceImage(
        generator=generator,
        original_name=checked.name,
        sha256=checked.sha256,
        size_bytes=checked.size_bytes,
        image_format=checked.info.format,
        width=checked.info.width,
        height=checked.info.height,
        uploaded_by=uploaded_by if uploaded_by is not None and uploaded_by.is_authenticated else None,
    )
    upload.seek(0)
    reference.image.save(
        f"{generator.slug}-{checked.sha256[:16]}{checked.extension}",
        upload,
        save=False,
    )
    try:
        with transaction.atomic():
            reference.save()
    except IntegrityError:  # the same image uploaded twice at the same moment
        reference.image.delete(save=False)
        return generator.references.get(sha256=checked.sha256), False
    if enqueue:
        _send_task("workers.tasks.compute_reference_features", [reference.pk])
    return reference, True


def reference_images_upload(
    *, generator: Generator, files: Iterable[File], uploaded_by: Actor, enqueue: bool = True
) -> list[ReferenceUpload]:
    """Add many files at once: each is checked on its own (a rejected file does not stop the others),
    and one task computes the features of all the new ones."""
    uploads = list(files)
    upload_count_validate(count=len(uploads))
    results = []
    for upload in uploads:
        name = display_name(upload.name)
        try:
            reference, created = reference_image_create(
                generator=generator, upload=upload, uploaded_by=uploaded_by, enqueue=False
            )
        except UploadRejected as rejected:
            results.append(ReferenceUpload(name=name, reference=None, created=False, error=str(rejected)))
        else:
            results.append(ReferenceUpload(name=name, reference=reference, created=created))
    new_ids = [r.reference.pk for r in results if r.created and r.reference is not None]
    if new_ids:
        audit_record(
            actor=uploaded_by, action="reference_upload", target=generator, detail={"count": len(new_ids)}
        )
        if enqueue:
            _send_task("workers.tasks.compute_reference_features", new_ids)
    return results


def reference_image_delete(*, actor: Actor, reference: ReferenceImage) -> None:
    name = reference.image.name
    audit_record(
        actor=actor,
        action="reference_delete",
        target=reference.generator,
        detail={"sha256": reference.sha256},
    )
    reference.delete()
    transaction.on_commit(lambda: default_storage.delete(name))


def reference_block_features(
    references: Sequence[ReferenceImage],
    *,
    backbone: Backbone,
    cache: FeatureCache,
    blocks: Sequence[int],
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, np.ndarray]:
    """Features `{block: [N, D]}` of the references, from the cache; the missing ones are read through the
    storage API and computed in batches (and cached), every block of a batch in one forward pass."""
    from attribution.features import extract_features

    take = backbone.validate_blocks(blocks)
    by_block = {block: np.zeros((len(references), backbone.width), dtype=np.float32) for block in take}
    missing = []
    for row, reference in enumerate(references):
        vectors = [cache.get(reference.sha256, backbone.identity, block) for block in take]
        if all(vector is not None for vector in vectors):
            for block, vector in zip(take, vectors, strict=True):
                by_block[block][row] = vector
        else:
            missing.append(row)
    done = len(references) - len(missing)
    if progress is not None:
        progress(done, len(references))
    batch_size = settings.ATTRIBUTION_BATCH_SIZE
    for rows in _batched(missing, batch_size):
        sources = [_read_bytes(references[row].image.name) for row in rows]
        features = extract_features(
            backbone,
            sources,
            take,
            sha256s=[references[row].sha256 for row in rows],
            cache=cache,
            batch_size=batch_size,
        )
        for block in take:
            by_block[block][rows] = features[block]
        done += len(rows)
        if progress is not None:
            progress(done, len(references))
    return by_block


def training_blocks(*, backbone: Backbone) -> list[int]:
    """The blocks a training job reads: the head's (ATTRIBUTION_BLOCKS) and, for the per-block sweep, every
    block of the backbone. One forward pass gives them all."""
    return sorted({int(block) for block in settings.ATTRIBUTION_BLOCKS} | set(range(backbone.num_blocks)))


def reference_features_compute(
    *, reference_ids: Sequence[int], backbone: Backbone, cache: FeatureCache
) -> int:
    """Fill the feature cache for these references (those deleted meanwhile are skipped) with every block a
    training job reads, so that the training finds them all cached; returns how many."""
    references = list(ReferenceImage.objects.filter(pk__in=reference_ids).order_by("pk"))
    reference_block_features(
        references, backbone=backbone, cache=cache, blocks=training_blocks(backbone=backbone)
    )
    return len(references)


def _read_bytes(name: str) -> bytes:
    try:
        with default_storage.open(name, "rb") as handle:
            return bytes(handle.read())
    except FileNotFoundError:
        raise RegistryError(f"reference image file {name} is missing from storage") from None


# --- training ---------------------------------------------------------------------------------------


def training_job_start(*, requested_by: Actor, enqueue: bool = True) -> TrainingJob:
    """Create a queued training job and (with `enqueue`) send it to the `training` queue on commit.

    Raises `TrainingAlreadyRunning` while another job is queued or running (the database's one-at-a-time
    constraint is the guard against two requests at the same moment), and `RegistryError` when fewer than
    two active generators have reference images.
    """
    current = training_job_current()
    if current is not None:
        raise TrainingAlreadyRunning(current)
    counts: dict[str, int] = {}
    for reference in reference_images_for_training():
        counts[reference.generator.slug] = counts.get(reference.generator.slug, 0) + 1
    if len(counts) < 2:
        raise RegistryError(
            "Training needs reference images for at least two active generators (real included); "
            f"now: {', '.join(f'{slug} ({n})' for slug, n in sorted(counts.items())) or 'none'}."
        )
    try:
        with transaction.atomic():
            job = TrainingJob.objects.create(
                requested_by=requested_by
                if requested_by is not None and requested_by.is_authenticated
                else None,
                log=_log_line(f"queued: {len(counts)} classes, {sum(counts.values())} reference images"),
            )
    except IntegrityError:
        raise TrainingAlreadyRunning(
            training_job_current() or TrainingJob.objects.latest("created_at")
        ) from None
    audit_record(actor=requested_by, action="train", target=job, detail={"classes": counts})
    if enqueue:
        _send_task("workers.tasks.train_head", job.pk)
    return job


def training_job_cancel(*, job: TrainingJob, actor: Actor) -> TrainingJob:
    """A queued job is cancelled at once; a running one stops at its next step. A job that has been
    running for longer than the task time limit has lost its worker and is cancelled at once."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job.pk)
        if job.status not in TrainingJob.RUNNING_STATES:
            raise RegistryError(f"Training job {job.pk} is {job.status}: there is nothing to cancel.")
        stale = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
        if job.status == TrainingJob.Status.QUEUED or (job.started_at is not None and job.started_at < stale):
            job.status, job.finished_at = TrainingJob.Status.CANCELLED, timezone.now()
            job.log += _log_line(f"cancelled by {actor}")
        else:
            job.log += _log_line(f"cancel requested by {actor}; stopping at the next step")
        job.cancel_requested = True
        job.save(update_fields=["status", "finished_at", "cancel_requested", "log"])
        audit_record(actor=actor, action="training_cancel", target=job)
    return job


class _JobReporter:
    """Progress and cancellation for a running job: writes only its own fields, at most twice a second."""

    def __init__(self, job: TrainingJob) -> None:
        self.job = job
        self.saved_at = 0.0
        self.checked_at = 0.0
        self.cancelled = False

    def report(self, step: str, progress: float, message: str | None = None) -> None:
        changed_step = step != self.job.step
        self.job.step, self.job.progress = step, round(min(max(progress, 0.0), 1.0), 4)
        if message is not None or changed_step:
            self.job.log += _log_line(f"{step}: {message}" if message else step)
        now = time.monotonic()
        if changed_step or message is not None or now - self.saved_at >= _PROGRESS_SAVE_INTERVAL_S:
            self.job.save(update_fields=["step", "progress", "log"])
            self.saved_at = now

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self.cancelled and now - self.checked_at >= _CANCEL_CHECK_INTERVAL_S:
            self.checked_at = now
            self.cancelled = TrainingJob.objects.filter(pk=self.job.pk, cancel_requested=True).exists()
        return self.cancelled

    def finish(self, status: str, *, error: str = "", head_version: HeadVersion | None = None) -> None:
        self.job.status, self.job.error, self.job.finished_at = status, error, timezone.now()
        self.job.head_version = head_version
        if status == TrainingJob.Status.DONE:
            self.job.progress = 1.0
        self.job.log += _log_line(f"{status}{f': {error}' if error else ''}")
        self.job.save(
            update_fields=["status", "error", "finished_at", "head_version", "progress", "step", "log"]
        )


def training_job_run(*, job_id: int, backbone: Backbone, cache: FeatureCache) -> TrainingJob:
    """Run a queued job: features of every active generator's references (cached, or computed in batches),
    the head (`attribution.training.train_head`), its artifact in storage and a candidate HeadVersion,
    activated at once when HEAD_AUTO_ACTIVATE allows. A job that is no longer queued or running (done,
    cancelled) is left alone, so a redelivered task does nothing twice."""
    from attribution.training import TrainingCancelled

    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job_id)
        if job.status not in TrainingJob.RUNNING_STATES:
            return job
        job.status, job.started_at, job.progress = TrainingJob.Status.RUNNING, timezone.now(), 0.0
        job.log += _log_line(f"running on backbone {backbone.identity} ({backbone.device})")
        job.save(update_fields=["status", "started_at", "progress", "log"])
    reporter = _JobReporter(job)
    try:
        if reporter.should_stop():
            raise TrainingCancelled("cancelled before it started")
        head_version = _train(job, reporter, backbone=backbone, cache=cache)
    except TrainingCancelled:
        reporter.finish(TrainingJob.Status.CANCELLED)
        return job
    except Exception as error:  # any failure ends the job with its reason, for the admin to read
        logger.exception("training job %s failed", job.pk)
        reason = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
        reporter.finish(TrainingJob.Status.FAILED, error=reason)
        return job
    reporter.finish(TrainingJob.Status.DONE, head_version=head_version)
    if settings.HEAD_AUTO_ACTIVATE and head_version_may_auto_activate(candidate=head_version):
        head_version_activate(head_version=head_version, actor=job.requested_by, automatic=True)
        job.log += _log_line(f"head v{head_version.version} activated automatically")
        job.save(update_fields=["log"])
    return job


def _train(
    job: TrainingJob, reporter: _JobReporter, *, backbone: Backbone, cache: FeatureCache
) -> HeadVersion:
    from attribution.artifact import HeadArtifact, save_head
    from attribution.features import concat_blocks
    from attribution.training import TrainConfig, TrainingCancelled, train_head

    blocks = [int(block) for block in settings.ATTRIBUTION_BLOCKS]
    references = reference_images_for_training()
    labels = [reference.generator.slug for reference in references]
    counts = {slug: labels.count(slug) for slug in sorted(set(labels))}
    reporter.report("features", 0.0, "classes: " + ", ".join(f"{slug} ({n})" for slug, n in counts.items()))
    if Generator.REAL_SLUG not in counts:
        reporter.report(
            "features", 0.0, 'warning: "real" has no reference images; no image can be called real'
        )

    def feature_progress(done: int, total: int) -> None:
        if reporter.should_stop():
            raise TrainingCancelled("cancelled while computing features")
        reporter.report("features", 0.4 * done / max(total, 1))

    # The head's blocks and every block for the per-block sweep, all from one forward pass per batch.
    by_block = reference_block_features(
        references,
        backbone=backbone,
        cache=cache,
        blocks=training_blocks(backbone=backbone),
        progress=feature_progress,
    )
    features = concat_blocks(by_block, blocks)
    swept = f"blocks {min(by_block)}-{max(by_block)}, the head's {blocks}"
    reporter.report("features", 0.4, f"features of {len(references)} images ready ({swept})")

    config = TrainConfig(real_label=Generator.REAL_SLUG)
    sha256s = [reference.sha256 for reference in references]
    result = train_head(
        features,
        labels,
        sample_ids=sha256s,
        config=config,
        # The engine's last step is "done"; the job is done only once its head is saved.
        progress=lambda step, fraction: reporter.report(
            "trained" if step == "done" else step, 0.4 + 0.45 * fraction
        ),
        should_stop=reporter.should_stop,
    )
    metrics = _json_safe(result.metrics)
    C = float(result.hyperparameters.get("C", 1.0))  # a kNN head has no C: the probe's default
    metrics |= _block_sweep(by_block, labels, head_blocks=blocks, C=C, config=config, reporter=reporter)
    reporter.report("saving", 0.95, _metrics_line(metrics))

    artifact = HeadArtifact(
        estimator=result.estimator,
        classes=[str(c) for c in result.estimator.classes_],
        backbone_identity=backbone.identity,
        model_name=backbone.config.model_name,
        pretrained_tag=backbone.identity.split("/", 1)[1] if backbone.pretrained else None,
        pretrained=backbone.pretrained,
        blocks=blocks,
        score_method=config.score_method,
        threshold=result.threshold,
        hyperparameters=result.hyperparameters,
        metrics=metrics,
        reference_ids=sha256s,
        reference_labels=labels,
        reference_features=features,
    )
    with transaction.atomic():
        version = (HeadVersion.objects.aggregate(top=Max("version"))["top"] or 0) + 1
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"head-v{version}.npz"
            save_head(artifact, path)
            with open(path, "rb") as handle:
                name = default_storage.save(f"heads/head-v{version}.npz", File(handle))
        return HeadVersion.objects.create(
            version=version,
            artifact=name,
            head_kind=result.head_kind,
            classes=artifact.classes,
            blocks=blocks,
            backbone=backbone.identity,
            pretrained=backbone.pretrained,
            threshold=float(result.threshold),
            metrics=metrics | {"hyperparameters": _json_safe(result.hyperparameters)},
            manifest=[
                {"generator": label, "sha256": sha} for label, sha in zip(labels, sha256s, strict=True)
            ],
            created_by=job.requested_by,
        )


def _block_sweep(
    by_block: dict[int, np.ndarray],
    labels: Sequence[str],
    *,
    head_blocks: Sequence[int],
    C: float,
    config: TrainConfig,
    reporter: _JobReporter,
) -> dict[str, Any]:
    """The per-block sweep for the head's metrics (`attribution.sweep.sweep_blocks` with the head's C and
    folds; closed set only, the open-set figures would cost about five times as much): `per_block` lists
    `{block, accuracy, macro_f1, auroc (None), head_block}` for every block, or is None with
    `per_block_skipped` saying why."""
    from attribution.sweep import sweep_blocks
    from attribution.training import TrainingCancelled

    if reporter.should_stop():
        raise TrainingCancelled("cancelled before the block sweep")
    blocks = sorted(by_block)
    reporter.report(
        "block_sweep",
        0.85,
        f"a linear probe (C {C:.3g}, {config.cv_folds}-fold) on each of blocks {blocks[0]}-{blocks[-1]}",
    )
    try:
        scores = sweep_blocks(
            by_block, labels, C=C, cv_folds=config.cv_folds, random_state=config.random_state
        )
    except ValueError as error:  # a class with a single image: nothing to cross-validate
        reporter.report("block_sweep", 0.95, f"skipped: {error}")
        return {"per_block": None, "per_block_skipped": str(error)}
    rows = [score.as_dict() | {"head_block": score.block in head_blocks} for score in scores]
    best = max(rows, key=lambda row: (row["accuracy"], -row["block"]))
    ours = ", ".join(f"block {row['block']} {row['accuracy']:.3f}" for row in rows if row["head_block"])
    reporter.report(
        "block_sweep",
        0.95,
        "accuracy by block: "
        + " ".join(f"{row['accuracy']:.2f}" for row in rows)
        + f"; best block {best['block']} ({best['accuracy']:.3f}); the head's: {ours}",
    )
    return {"per_block": rows, "per_block_protocol": {"probe": "linear", "C": C}}


def _metrics_line(metrics: dict[str, Any]) -> str:
    shown = [f"{key} {metrics[key]:.3f}" for key in COMPARED_METRICS if isinstance(metrics.get(key), float)]
    return "metrics: " + (", ".join(shown) or "none")


def _json_safe(value: Any) -> Any:
    def default(item: Any) -> Any:
        if isinstance(item, np.generic | np.ndarray):
            return item.tolist()
        raise TypeError(f"{type(item).__name__} is not JSON serialisable")

    return json.loads(json.dumps(value, default=default))


def _log_line(message: str) -> str:
    return f"{timezone.now():%H:%M:%S} {message}\n"


# --- activation and rollback ------------------------------------------------------------------------


def head_version_may_auto_activate(*, candidate: HeadVersion) -> bool:
    """True when no head is active, or when none of the candidate's accuracy, AUROC and OSCR is worse than
    the active head's by more than HEAD_AUTO_ACTIVATE_TOLERANCE (a metric the candidate lacks but the
    active head has counts as worse)."""
    active = head_version_active()
    if active is None:
        return True
    tolerance = settings.HEAD_AUTO_ACTIVATE_TOLERANCE
    for key in COMPARED_METRICS:
        theirs, ours = active.metrics.get(key), candidate.metrics.get(key)
        if theirs is None:
            continue
        if ours is None or ours < theirs - tolerance:
            return False
    return True


def head_version_activate(*, head_version: HeadVersion, actor: Actor, automatic: bool = False) -> HeadVersion:
    """Make this head the one that makes verdicts; the active one is retired. Activating an older version
    than the active one is a rollback (audited as such)."""
    with transaction.atomic():
        current = HeadVersion.objects.select_for_update().filter(status=HeadVersion.Status.ACTIVE).first()
        if current is not None and current.pk == head_version.pk:
            return current
        if current is not None:
            current.status = HeadVersion.Status.RETIRED
            current.save(update_fields=["status"])
        head_version.status, head_version.activated_at = HeadVersion.Status.ACTIVE, timezone.now()
        head_version.save(update_fields=["status", "activated_at"])
        rollback = current is not None and head_version.version < current.version
        audit_record(
            actor=actor,
            action="rollback" if rollback else "activate",
            target=head_version,
            detail={
                "version": head_version.version,
                "previous": current.version if current else None,
                "automatic": automatic,
            },
        )
    return head_version


# --- re-attribution ---------------------------------------------------------------------------------


def submissions_reattribute(
    *, actor: Actor, team: Team, case: Case | None = None, since: datetime | None = None
) -> int:
    """Queue the team's submissions of `case`, or uploaded since `since`, for a verdict by the active head.

    Submissions in flight, duplicates (their original carries the verdict) and those the active head has
    already judged are left out. Returns how many were queued.
    """
    active = head_version_active()
    if active is None:
        raise RegistryError("No head is active: activate a head version first.")
    if case is None and since is None:
        raise RegistryError("Choose a case or a date to re-attribute from.")
    if case is not None and case.team_id != team.pk:
        raise RegistryError("That case belongs to another team.")
    submissions = (
        Submission.objects.filter(team=team, duplicate_of__isnull=True)
        .exclude(status__in=[Submission.Status.QUEUED, Submission.Status.PROCESSING])
        .exclude(verdicts__head_version=active)
    )
    if case is not None:
        submissions = submissions.filter(case=case)
    if since is not None:
        submissions = submissions.filter(created_at__gte=since)
    with transaction.atomic():
        # The submissions app's re-queue: status back to queued, sent in batches after commit.
        ids = submissions_requeue(
            submission_ids=submissions.values_list("pk", flat=True), reset_attempts=True
        )
        audit_record(
            actor=actor,
            action="reattribute",
            team=team,
            target=case,
            detail={
                "count": len(ids),
                "head_version": active.version,
                "since": since.isoformat() if since else None,
            },
        )
    return len(ids)


# --- seeding (the demo, and the tests' fixtures) ----------------------------------------------------


def registry_seed_from_folder(
    *,
    source_dir: Path,
    classes: Sequence[str],
    per_class: int,
    actor: Actor,
    family: str = Generator.Family.GAN,
    description: str = "",
    enqueue: bool = False,
) -> dict[str, int]:
    """Register each class folder of an ImageFolder (`source_dir/<slug>/*.png`) as a generator ("real" is
    the built-in one) with its first `per_class` images as references; existing ones are kept, so running
    it twice adds nothing. Returns the number of new references per class."""
    added = {}
    for slug in classes:
        if slug == Generator.REAL_SLUG:
            generator = generator_ensure_real()
        else:
            generator = Generator.objects.filter(slug=slug).first() or generator_create(
                actor=actor, name=slug, slug=slug, family=family, description=description
            )
        paths = sorted((source_dir / slug).glob("*.png"))[:per_class]
        if not paths:
            raise RegistryError(f"{source_dir / slug} has no PNG images")
        files = [File(open(path, "rb"), name=path.name) for path in paths]  # noqa: SIM115 - closed below
        try:
            results = reference_images_upload(
                generator=generator, files=files, uploaded_by=actor, enqueue=enqueue
            )
        finally:
            for handle in files:
                handle.close()
        errors = [f"{r.name}: {r.error}" for r in results if r.error]
        if errors:
            raise RegistryError("; ".join(errors))
        added[slug] = sum(r.created for r in results)
    return added


def head_train_now(*, actor: Actor, backbone: Backbone, cache: FeatureCache) -> HeadVersion:
    """Train in this process (the demo seeding and the tests), through the same job as the worker runs."""
    job = training_job_run(
        job_id=training_job_start(requested_by=actor, enqueue=False).pk, backbone=backbone, cache=cache
    )
    if job.status != TrainingJob.Status.DONE or job.head_version is None:
        raise RegistryError(f"training job {job.pk} ended {job.status}: {job.error}")
    return job.head_version


@dataclass(frozen=True)
class DemoSeed:
    added: dict[str, int]
    head_version: HeadVersion
    trained: bool


def registry_seed_demo(
    *,
    actor: Actor,
    load_engine: Callable[[], tuple[Backbone, FeatureCache]],
    per_class: int = 10,
    seed: int = 0,
    source_dir: Path | None = None,
) -> DemoSeed:
    """The demo registry: "real" and the synthetic benchmark's known generators (`per_class` references
    each, from `source_dir` or from a benchmark made now), and an active head trained on them. Running it
    again adds nothing and trains only when no head is active; `load_engine` (backbone and feature cache)
    is called only when there is work for them.

    The benchmark is made at the backbone's input size: resampled by the preprocessing (96 to 224 pixels),
    the generators' fine traces fade, and with random weights ten images a class no longer tell them apart.
    """
    from attribution.synth import DEFAULT_KNOWN, make_benchmark

    description = "A small generator network of the synthetic demo benchmark (python -m attribution synth)."
    have = dict(
        Generator.objects.filter(slug__in=DEFAULT_KNOWN)
        .annotate(n=Count("references"))
        .values_list("slug", "n")
    )
    active = head_version_active()
    if active is not None and all(have.get(slug, 0) >= per_class for slug in DEFAULT_KNOWN):
        return DemoSeed(added=dict.fromkeys(DEFAULT_KNOWN, 0), head_version=active, trained=False)
    backbone, cache = load_engine()
    with tempfile.TemporaryDirectory() as folder:
        if source_dir is None:
            source_dir = Path(folder)
            make_benchmark(source_dir, seed=seed, per_class=per_class, size=backbone.image_size[0])
        added = registry_seed_from_folder(
            source_dir=source_dir,
            classes=DEFAULT_KNOWN,
            per_class=per_class,
            actor=actor,
            description=description,
        )
    active = head_version_active()
    if active is not None:
        return DemoSeed(added=added, head_version=active, trained=False)
    head = head_train_now(actor=actor, backbone=backbone, cache=cache)
    return DemoSeed(
        added=added, head_version=head_version_activate(head_version=head, actor=actor), trained=True
    )
