"""Writes of submissions and verdicts: upload, queue, claim, attribute, re-queue."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import IO, TYPE_CHECKING, Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from PIL import Image

from attribution.features import FeatureCache, concat_blocks, extract_features
from attribution.images import open_image
from webapp.audit.services import audit_record
from webapp.cases.models import Case
from webapp.registry.models import HeadVersion
from webapp.submissions.models import Submission, Verdict
from webapp.submissions.validation import (
    UploadRejected,
    ValidatedUpload,
    display_name,
    upload_count_validate,
    upload_validate,
)
from webapp.teams.models import Team

if TYPE_CHECKING:
    from attribution.predict import Attribution, Attributor

logger = logging.getLogger(__name__)

ATTRIBUTE_TASK = "workers.tasks.attribute_submission"
Status = Submission.Status


@dataclass(frozen=True)
class UploadOutcome:
    """One file of an upload: the submission it became, or why it was refused."""

    name: str
    submission: Submission | None = None
    error: str = ""


def _case_check(*, team: Team, case: Case | None) -> None:
    if case is None:
        return
    if case.team_id != team.id:
        raise UploadRejected("no such case in your team")
    if case.status == Case.Status.CLOSED:
        raise UploadRejected(f"the case {case.title!r} is closed: reopen it to add images")


def _submission_store(
    *, team: Team, user: AbstractBaseUser, case: Case | None, upload: ValidatedUpload, file: IO[bytes]
) -> Submission:
    # An image the team already sent (and that did not fail) is not analysed again: the new
    # submission points at the earlier one and shares its stored file, status and verdict.
    original = (
        Submission.objects.filter(team=team, sha256=upload.sha256, duplicate_of__isnull=True)
        .exclude(status=Status.FAILED)
        .order_by("created_at", "id")
        .first()
    )
    now = timezone.now()
    submission = Submission(
        team=team,
        case=case,
        submitted_by=user,
        original_name=upload.name,
        sha256=upload.sha256,
        size_bytes=upload.size_bytes,
        image_format=upload.info.format,
        width=upload.info.width,
        height=upload.info.height,
        metadata={"mode": upload.info.mode, "frames": upload.info.n_frames, "tags": upload.info.metadata},
        duplicate_of=original,
        status=Status.DONE if original else Status.QUEUED,
        queued_at=None if original else now,
        finished_at=now if original else None,
    )
    if original is not None:
        submission.image.name = original.image.name
    else:
        # Named by content, with the extension of the real format: never the uploader's path.
        submission.image.save(f"{upload.sha256[:16]}{upload.extension}", File(file), save=False)
    submission.save()
    audit_record(
        actor=user,
        action="upload",
        team=team,
        target=submission,
        detail={
            "name": upload.name,
            "sha256": upload.sha256,
            "duplicate_of": original.pk if original else None,
        },
    )
    return submission


def submission_create_batch(
    *, team: Team, user: AbstractBaseUser, uploaded_files: Sequence[IO[bytes]], case: Case | None = None
) -> list[UploadOutcome]:
    """Validate and store each file; refused files get their reason and the others go through.

    Raises UploadRejected for the whole request (too many files, a case of another team or
    a closed case). Accepted new images are queued when the transaction commits, grouped so
    that each task is one forward pass of up to ATTRIBUTION_BATCH_SIZE images.
    """
    upload_count_validate(count=len(uploaded_files))
    _case_check(team=team, case=case)
    outcomes: list[UploadOutcome] = []
    with transaction.atomic():
        for file in uploaded_files:
            name = display_name(getattr(file, "name", None))
            try:
                upload = upload_validate(uploaded_file=file, name=name)
            except UploadRejected as rejected:
                audit_record(
                    actor=user,
                    action="upload_rejected",
                    team=team,
                    detail={"name": name, "reason": str(rejected)},
                )
                outcomes.append(UploadOutcome(name=name, error=str(rejected)))
                continue
            submission = _submission_store(team=team, user=user, case=case, upload=upload, file=file)
            outcomes.append(UploadOutcome(name=name, submission=submission))
        submissions_enqueue(
            submission_ids=[
                o.submission.pk
                for o in outcomes
                if o.submission is not None and o.submission.duplicate_of_id is None
            ]
        )
    return outcomes


def submission_create(
    *, team: Team, user: AbstractBaseUser, uploaded_file: IO[bytes], case: Case | None = None
) -> Submission:
    """One upload; raises UploadRejected with the reason when the file is refused."""
    (outcome,) = submission_create_batch(team=team, user=user, uploaded_files=[uploaded_file], case=case)
    if outcome.submission is None:
        raise UploadRejected(outcome.error)
    return outcome.submission


def _send(submission_ids: list[int]) -> None:
    from workers.celery import app

    try:
        with app.producer_or_acquire() as producer:
            for submission_id in submission_ids:
                app.send_task(ATTRIBUTE_TASK, args=[submission_id], producer=producer)
    except Exception:
        # The uploads are committed; the periodic sweep sends them again once the broker is back.
        logger.exception("could not queue submissions %s; the sweep will re-queue them", submission_ids)


def submissions_enqueue(*, submission_ids: Iterable[int]) -> None:
    """Send one message per id to the `attribution` queue once the current transaction commits
    (nothing is sent if it rolls back). Workers group the messages into forward passes of their
    own batch size (workers/batching.py), whichever upload they came from."""
    ids = list(submission_ids)
    if ids:
        transaction.on_commit(partial(_send, ids))


def _requeue(
    submissions: QuerySet[Submission], *, reset_attempts: bool, limit: int | None = None
) -> list[int]:
    with transaction.atomic():
        # Rows a worker holds right now are skipped: that worker is still on them.
        locked = (
            submissions.filter(duplicate_of__isnull=True).select_for_update(skip_locked=True).order_by("id")
        )
        ids = list((locked[:limit] if limit else locked).values_list("id", flat=True))
        updates: dict[str, Any] = {"status": Status.QUEUED, "queued_at": timezone.now(), "error": ""}
        if reset_attempts:
            updates["attempts"] = 0
        Submission.objects.filter(id__in=ids).update(**updates)
        submissions_enqueue(submission_ids=ids)
    return ids


def submissions_requeue(*, submission_ids: Iterable[int], reset_attempts: bool = False) -> list[int]:
    """Queue submissions again (for example to re-attribute them with a newly activated head:
    pass reset_attempts=True). Duplicates are left alone; returns the ids queued."""
    return _requeue(Submission.objects.filter(id__in=list(submission_ids)), reset_attempts=reset_attempts)


def submissions_sweep_stale(*, stale_after_s: int | None = None) -> list[int]:
    """Re-queue what a lost message or a dead worker left queued or processing for too long.
    The attempts are kept, so an image that kills its worker every time ends as failed."""
    after = settings.SUBMISSION_STALE_AFTER_S if stale_after_s is None else stale_after_s
    cutoff = timezone.now() - timedelta(seconds=after)
    stale = Submission.objects.filter(
        Q(status=Status.QUEUED, queued_at__lt=cutoff)
        | Q(status=Status.QUEUED, queued_at__isnull=True, created_at__lt=cutoff)
        | Q(status=Status.PROCESSING, started_at__lt=cutoff)
    )
    ids = _requeue(stale, reset_attempts=False, limit=10_000)
    if ids:
        logger.warning("re-queued %d stale submissions", len(ids))
    return ids


def _submissions_claim(*, submission_ids: Sequence[int]) -> list[int]:
    """Mark the still-pending submissions as processing (one more attempt) and return their ids;
    those that have used up their attempts are failed instead."""
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            Submission.objects.select_for_update(skip_locked=True)
            .filter(
                id__in=submission_ids,
                status__in=[Status.QUEUED, Status.PROCESSING],
                duplicate_of__isnull=True,
            )
            .values_list("id", "attempts")
        )
        exhausted = [pk for pk, attempts in rows if attempts >= settings.SUBMISSION_MAX_ATTEMPTS]
        claimed = [pk for pk, attempts in rows if attempts < settings.SUBMISSION_MAX_ATTEMPTS]
        Submission.objects.filter(id__in=exhausted).update(
            status=Status.FAILED,
            finished_at=now,
            error=f"gave up after {settings.SUBMISSION_MAX_ATTEMPTS} attempts: no worker finished this image",
        )
        Submission.objects.filter(id__in=claimed).update(
            status=Status.PROCESSING, attempts=F("attempts") + 1, started_at=now, error=""
        )
    if exhausted:
        logger.error("submissions %s failed after %d attempts", exhausted, settings.SUBMISSION_MAX_ATTEMPTS)
    return claimed


@contextmanager
def _held(submission_ids: Sequence[int]) -> Iterator[list[Submission]]:
    """The claimed submissions, row-locked for as long as they are worked on, so that a second
    delivery of the same task on another worker skips them instead of working on them too."""
    submissions = Submission.objects.filter(id__in=submission_ids, status=Status.PROCESSING).order_by("id")
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            yield list(submissions.select_for_update(skip_locked=True))
    else:
        # SQLite has no row locks (one writer at a time); holding its write lock through a
        # forward pass would stall every upload, so the claim above is all there is.
        yield list(submissions)


def _open_stored(submission: Submission) -> Image.Image:
    with default_storage.open(submission.image.name, "rb") as stored:
        return open_image(stored, max_pixels=settings.UPLOAD_MAX_PIXELS)


def _attribute(
    attributor: Attributor,
    submissions: Sequence[Submission],
    cache: FeatureCache | None,
    *,
    batch_size: int,
    loader_threads: int,
) -> list[Attribution | str]:
    """Forward passes of `batch_size` over the submissions' images, opened and preprocessed by
    `loader_threads` threads beside the passes. An unreadable image fails alone; if a pass fails,
    its images are tried one by one, so that one bad image fails alone there too. Each item is the
    attribution or the reason it failed."""
    blocks = attributor.blocks
    unreadable: dict[int, Exception] = {}
    try:
        features = extract_features(
            attributor.backbone,
            [partial(_open_stored, submission) for submission in submissions],
            blocks,
            sha256s=[submission.sha256 for submission in submissions],
            cache=cache,
            batch_size=batch_size,
            loader_threads=loader_threads,
            failures=unreadable,
        )
    except SoftTimeLimitExceeded:
        raise
    except Exception as error:
        if len(submissions) == 1:
            logger.exception("attribution failed for image %s", submissions[0].sha256)
            return [f"the model could not process this image ({type(error).__name__}: {error})"]
        return [
            result
            for submission in submissions
            for result in _attribute(attributor, [submission], cache, batch_size=1, loader_threads=0)
        ]
    readable = [row for row in range(len(submissions)) if row not in unreadable]
    attributions = iter(attributor.attribute_features(concat_blocks(features, blocks)[readable]))
    return [
        f"the stored image could not be read: {unreadable[row]}" if row in unreadable else next(attributions)
        for row in range(len(submissions))
    ]


def _verdicts_for_group(
    *,
    submission_ids: Sequence[int],
    head_version: HeadVersion,
    attributor: Attributor,
    feature_cache: FeatureCache | None,
    batch_size: int,
    loader_threads: int,
) -> list[Verdict]:
    claimed = _submissions_claim(submission_ids=submission_ids)
    if not claimed:
        return []
    verdicts: list[Verdict] = []
    failures: dict[int, str] = {}
    with _held(claimed) as submissions:
        if not submissions:
            return []
        started = time.perf_counter()
        results = _attribute(
            attributor, submissions, feature_cache, batch_size=batch_size, loader_threads=loader_threads
        )
        elapsed_ms = (time.perf_counter() - started) * 1000 / len(submissions)
        now = timezone.now()
        with transaction.atomic():
            for submission, result in zip(submissions, results, strict=True):
                if isinstance(result, str):
                    failures[submission.pk] = result
                    continue
                verdict, _ = Verdict.objects.get_or_create(
                    submission=submission,
                    head_version=head_version,
                    defaults={
                        "label": result.label,
                        "decision": result.decision,
                        "score": float(result.score),
                        "threshold": float(result.threshold),
                        "probabilities": {str(k): float(v) for k, v in result.probabilities.items()},
                        "nearest_references": [
                            {"sha256": n["sha256"], "label": n["label"], "similarity": float(n["similarity"])}
                            for n in result.nearest
                        ],
                        "backbone": result.backbone,
                        "pretrained": bool(result.pretrained),
                        "elapsed_ms": elapsed_ms,
                    },
                )
                verdicts.append(verdict)
            Submission.objects.filter(id__in=[v.submission_id for v in verdicts]).update(
                status=Status.DONE, finished_at=now, error=""
            )
            for pk, reason in failures.items():
                Submission.objects.filter(id=pk).update(
                    status=Status.FAILED, finished_at=now, error=reason[:2000]
                )
    if failures:
        logger.warning("submissions failed: %s", failures)
    return verdicts


def verdict_create_batch(
    *,
    submission_ids: Sequence[int],
    head_version: HeadVersion,
    attributor: Attributor,
    feature_cache: FeatureCache | None = None,
    batch_size: int | None = None,
    loader_threads: int = 0,
) -> list[Verdict]:
    """Attribute the submissions still waiting among `submission_ids` in forward passes of `batch_size`
    (ATTRIBUTION_BATCH_SIZE by default), with `loader_threads` threads opening the images beside the
    passes, and store one verdict each for `head_version`: a redelivered task finds the verdict and
    makes no second one. Done, failed and duplicate submissions are skipped; an unreadable image fails
    alone.

    Submissions tried before (their worker died) go one at a time, each committed on its own: if one
    of them is the image that kills workers, it alone uses up its attempts and ends as failed.
    """
    pending = list(
        Submission.objects.filter(
            id__in=list(submission_ids),
            status__in=[Status.QUEUED, Status.PROCESSING],
            duplicate_of__isnull=True,
        )
        .order_by("id")
        .values_list("id", "attempts")
    )
    fresh = [pk for pk, attempts in pending if attempts == 0]
    groups = ([fresh] if fresh else []) + [[pk] for pk, attempts in pending if attempts > 0]
    return [
        verdict
        for group in groups
        for verdict in _verdicts_for_group(
            submission_ids=group,
            head_version=head_version,
            attributor=attributor,
            feature_cache=feature_cache,
            batch_size=batch_size or settings.ATTRIBUTION_BATCH_SIZE,
            loader_threads=loader_threads,
        )
    ]
