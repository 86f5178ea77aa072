"""Writes of training jobs: start, cancel, run (on a worker), and the sweep that re-sends or ends stuck ones.

The machine learning is the engine's (`attribution.build.build_head`); this module loads the data it
needs, reports the job's progress and saves what the engine returns.
"""

from __future__ import annotations

import logging
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from webapp.audit.services import audit_record
from webapp.common.tasks import task_send_on_commit, tasks_send
from webapp.registry.models import Generator, HeadVersion, TrainingJob
from webapp.registry.selectors import reference_images_for_training, training_job_current
from webapp.registry.services.errors import Actor, RegistryError, TrainingAlreadyRunning, TrainingNotQueued
from webapp.registry.services.heads import COMPARED_METRICS, head_version_activate, head_version_may_auto_activate
from webapp.registry.services.references import reference_block_features, training_blocks
from webapp.teams.selectors import user_or_none

if TYPE_CHECKING:
    from attribution.backbone import Backbone
    from attribution.features import FeatureCache

logger = logging.getLogger(__name__)

TRAIN_TASK = "workers.tasks.train_head"
_PROGRESS_SAVE_INTERVAL_S = 0.5
_CANCEL_CHECK_INTERVAL_S = 0.25


def training_job_start(*, requested_by: Actor, enqueue: bool = True) -> TrainingJob:
    """Create a queued training job and (with `enqueue`) send it to the `training` queue on commit.

    Raises `TrainingAlreadyRunning` while another job is queued or running (the database's one-at-a-time
    constraint is the guard against two requests at the same moment), and `RegistryError` when fewer than
    two active generators have reference images, or one of them has fewer than TRAINING_MIN_REFERENCES.
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
    minimum = settings.TRAINING_MIN_REFERENCES
    short = {slug: n for slug, n in counts.items() if n < minimum}
    if short:
        raise RegistryError(
            f"Training needs at least {minimum} reference images per generator (10 to 50 give a useful head); "
            f"too few: {', '.join(f'{slug} ({n})' for slug, n in sorted(short.items()))}."
        )
    try:
        with transaction.atomic():
            job = TrainingJob.objects.create(
                requested_by=user_or_none(requested_by),
                log=_log_line(f"queued: {len(counts)} classes, {sum(counts.values())} reference images"),
            )
    except IntegrityError:
        raise TrainingAlreadyRunning(
            training_job_current() or TrainingJob.objects.latest("created_at")
        ) from None
    audit_record(actor=requested_by, action="train", target=job, detail={"classes": counts})
    if enqueue:
        task_send_on_commit(TRAIN_TASK, job.pk, on_failure=lambda: _training_job_unsent(job.pk))
        job.refresh_from_db()
        if job.status == TrainingJob.Status.FAILED:  # sent at once (no outer transaction), and refused
            raise TrainingNotQueued(job)
    return job


def _training_job_unsent(job_id: int) -> None:
    """The broker refused the job's message: end the job, so that it does not block the next training."""
    TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.QUEUED).update(
        status=TrainingJob.Status.FAILED,
        finished_at=timezone.now(),
        error="the task queue (broker) could not be reached; start the training again",
    )


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
    activated at once when HEAD_AUTO_ACTIVATE allows. A queued job starts; a running one is taken over only when
    its worker is gone (its message redelivered after the task time limit); anything else is left alone, so
    a second message for the same job does nothing twice."""
    from attribution.training import TrainingCancelled

    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job_id)
        lost_after = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
        resumable = job.status == TrainingJob.Status.RUNNING and (
            job.started_at is None or job.started_at < lost_after
        )
        if job.status != TrainingJob.Status.QUEUED and not resumable:
            # Ended, or running on a worker that may still be at it (a second message, such as the sweep's
            # re-send of a queued job, arrived meanwhile): nothing to do twice.
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
    """Load the references and their features, let the engine build the head (`attribution.build`), and
    save the artifact and its HeadVersion."""
    from attribution.artifact import save_head
    from attribution.build import BackboneInfo, build_head
    from attribution.training import TrainConfig, TrainingCancelled

    blocks = settings.ATTRIBUTION_BLOCKS
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
    reporter.report(
        "features",
        0.4,
        f"features of {len(references)} images ready (blocks {min(by_block)}-{max(by_block)}, the head's "
        + (f"{blocks})" if blocks != "auto" else "to be chosen by the held-out generators' OSCR)"),
    )
    sha256s = [reference.sha256 for reference in references]
    train_labels, sample_ids, robust = labels, sha256s, None
    if settings.TRAINING_ROBUST:  # perturbed copies of each reference join the training set (services/robust.py)
        from webapp.registry.services.robust import reference_features_robust

        by_block, train_labels, sample_ids, robust = reference_features_robust(
            references, by_block, labels, backbone=backbone, cache=cache
        )
        reporter.report("features", 0.4, f"robust training: {robust['copies']} perturbed copies added")
    built = build_head(
        by_block,
        train_labels,
        sample_ids=sample_ids,
        backbone=BackboneInfo(
            identity=backbone.identity, model_name=backbone.config.model_name, pretrained=backbone.pretrained
        ),
        blocks=blocks,
        config=TrainConfig(real_label=Generator.REAL_SLUG, tpr=settings.TRAINING_THRESHOLD_TPR),
        # The engine's last training step is "done"; the job is done only once its head is saved.
        progress=lambda step, fraction, message: reporter.report(
            "trained" if step == "done" else step, 0.4 + 0.55 * fraction, message
        ),
        should_stop=reporter.should_stop,
    )
    built.metrics["robust_training"] = robust  # None, or the perturbations and the number of copies
    built.metrics.setdefault("hyperparameters", {})["robust_training"] = robust is not None
    reporter.report("saving", 0.95, _metrics_line(built.metrics))
    with transaction.atomic():
        version = (HeadVersion.objects.aggregate(top=Max("version"))["top"] or 0) + 1
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"head-v{version}.npz"
            save_head(built.artifact, path)
            with open(path, "rb") as handle:
                name = default_storage.save(f"heads/head-v{version}.npz", File(handle))
        return HeadVersion.objects.create(
            version=version,
            artifact=name,
            head_kind=built.head_kind,
            classes=built.artifact.classes,
            blocks=built.artifact.blocks,
            backbone=backbone.identity,
            pretrained=backbone.pretrained,
            threshold=built.threshold,
            metrics=built.metrics,
            manifest=[
                {"generator": label, "sha256": sha} for label, sha in zip(labels, sha256s, strict=True)
            ],
            created_by=job.requested_by,
        )


def _metrics_line(metrics: dict[str, Any]) -> str:
    shown = [f"{key} {metrics[key]:.3f}" for key in COMPARED_METRICS if isinstance(metrics.get(key), float)]
    return "metrics: " + (", ".join(shown) or "none")


def _log_line(message: str) -> str:
    return f"{timezone.now():%H:%M:%S} {message}\n"




def head_train_now(*, actor: Actor, backbone: Backbone, cache: FeatureCache) -> HeadVersion:
    """Train in this process (the demo seeding and the tests), through the same job as the worker runs."""
    job = training_job_run(
        job_id=training_job_start(requested_by=actor, enqueue=False).pk, backbone=backbone, cache=cache
    )
    if job.status != TrainingJob.Status.DONE or job.head_version is None:
        raise RegistryError(f"training job {job.pk} ended {job.status}: {job.error}")
    return job.head_version


def training_jobs_sweep(*, queued_after_s: int | None = None) -> dict[str, list[int]]:
    """Jobs that a lost message or a dead worker left behind: a job queued for longer than `queued_after_s`
    (TRAINING_RESEND_AFTER_S) is sent again, a job running past the task's hard time limit has lost its
    worker and is failed, so that the next training can start. Returns the ids `{"resent", "failed"}`."""
    after = settings.TRAINING_RESEND_AFTER_S if queued_after_s is None else queued_after_s
    now = timezone.now()
    queued = list(
        TrainingJob.objects.filter(
            status=TrainingJob.Status.QUEUED, created_at__lt=now - timedelta(seconds=after)
        ).values_list("pk", flat=True)
    )
    failed = []
    with transaction.atomic():
        stuck = TrainingJob.objects.select_for_update(skip_locked=True).filter(
            status=TrainingJob.Status.RUNNING,
            started_at__lt=now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT),
        )
        for job in stuck:
            job.status, job.finished_at = TrainingJob.Status.FAILED, now
            job.error = "the worker running this job stopped answering (past the task time limit)"
            job.log += _log_line(f"failed: {job.error}")
            job.save(update_fields=["status", "finished_at", "error", "log"])
            failed.append(job.pk)
    if queued and tasks_send(TRAIN_TASK, [[pk] for pk in queued]):
        logger.warning("training jobs %s were still queued: sent again", queued)
    if failed:
        logger.error("training jobs %s lost their worker: failed", failed)
    return {"resent": queued if queued else [], "failed": failed}
