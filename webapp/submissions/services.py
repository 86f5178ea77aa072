"""Writes of submissions and verdicts: upload, queue, claim, attribute, re-queue, and the analyst's confirmation
of a verdict."""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from PIL import Image

from attribution.features import FeatureCache, concat_blocks, extract_features
from attribution.images import ImageRejected, open_image
from attribution.provenance import Provenance, read_provenance
from webapp.audit.services import audit_record
from webapp.cases.models import Case
from webapp.common.permissions import CONFIRM_MESSAGE, user_may_confirm
from webapp.common.tasks import tasks_send_on_commit
from webapp.common.uploads import (
    UploadRejected,
    ValidatedUpload,
    display_name,
    upload_count_validate,
    upload_validate,
)
from webapp.registry.models import Generator, HeadVersion
from webapp.registry.selectors import generator_aliases, head_version_active
from webapp.registry.services.heads import head_version_activate_reviewed
from webapp.submissions.models import Confirmation, Submission, Verdict
from webapp.submissions.selectors import provenance_agreement
from webapp.teams.models import Team

if TYPE_CHECKING:
    from attribution.predict import Attribution, Attributor

logger = logging.getLogger(__name__)

ATTRIBUTE_TASK = "workers.tasks.attribute_submission"
Status = Submission.Status


class ReattributionRefused(ValueError):
    """A re-attribution that cannot be carried out; the message says why, for the user."""


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
    *, team: Team, user: User, case: Case | None, upload: ValidatedUpload, file: IO[bytes]
) -> Submission:
    # An image the team already sent (and that did not fail) is not analysed again: the new
    # submission points at the earlier one and shares its stored file, status and verdict.
    original = (
        Submission.objects.filter(team=team, sha256=upload.sha256, duplicate_of__isnull=True)
        .select_related("verdict")
        .exclude(status=Status.FAILED)
        .order_by("created_at", "id")
        .first()
    )
    now = timezone.now()
    submission = Submission(
        team=team,
        case=case,
        submitted_by=user,
        metadata={"mode": upload.info.mode, "frames": upload.info.n_frames, "tags": upload.info.metadata},
        duplicate_of=original,
        status=Status.DONE if original else Status.QUEUED,
        queued_at=None if original else now,
        finished_at=now if original else None,
    )
    submission.describe_upload(upload)
    if original is not None:
        submission.image.name = original.image.name
        for key, value in _latest_verdict_fields(original.verdict).items():
            setattr(submission, key, value)
        # The same bytes: the same provenance, and the same agreement with the same verdict.
        submission.provenance, submission.provenance_c2pa = original.provenance, original.provenance_c2pa
        submission.provenance_agreement = original.provenance_agreement
    else:
        submission.provenance, submission.provenance_c2pa = _provenance_read(file)
        # A random name with the extension of the real format: never the uploader's path, and nothing
        # derived from the content, which would tell a team that another one stored the same bytes.
        submission.image.save(f"{secrets.token_hex(16)}{upload.extension}", File(file), save=False)
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
    *, team: Team, user: User, uploaded_files: Sequence[IO[bytes]], case: Case | None = None
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
        _duplicates_reattribute(outcomes)
    return outcomes


def _duplicates_reattribute(outcomes: Sequence[UploadOutcome]) -> None:
    """An image sent again after another head was activated is judged again by the active head: its earlier
    upload is queued once more (its older verdict is kept), and the duplicate shows the new verdict."""
    active = head_version_active()
    if active is None:
        return
    stale = {
        o.submission.duplicate_of.pk
        for o in outcomes
        if o.submission is not None
        and o.submission.duplicate_of is not None
        and o.submission.duplicate_of.status == Status.DONE
        and o.submission.duplicate_of.verdict_head_version_id not in (None, active.pk)
    }
    if stale:
        submissions_requeue(submission_ids=sorted(stale), reset_attempts=True)


def submission_create(
    *, team: Team, user: User, uploaded_file: IO[bytes], case: Case | None = None
) -> Submission:
    """One upload; raises UploadRejected with the reason when the file is refused."""
    (outcome,) = submission_create_batch(team=team, user=user, uploaded_files=[uploaded_file], case=case)
    if outcome.submission is None:
        raise UploadRejected(outcome.error)
    return outcome.submission


def submissions_enqueue(*, submission_ids: Iterable[int]) -> None:
    """Send one message per id to the `attribution` queue once the current transaction commits
    (nothing is sent if it rolls back). Workers group the messages into forward passes of their
    own batch size (workers/batching.py), whichever upload they came from."""
    tasks_send_on_commit(ATTRIBUTE_TASK, [[submission_id] for submission_id in submission_ids])


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


def stored_image_open(submission: Submission) -> Image.Image:
    """The submission's stored image as the worker's forward pass takes it (the upload checks' limits)."""
    with default_storage.open(submission.image.name or "", "rb") as stored:
        return open_image(stored, max_pixels=settings.UPLOAD_MAX_PIXELS)


def feature_cache_key(submission: Submission) -> str:
    """The image's key in the feature cache, one per team: a cache shared by all teams would answer
    faster for an image another team already sent, and so tell of it."""
    return hashlib.sha256(f"team-{submission.team_id}:{submission.sha256}".encode()).hexdigest()


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
            [partial(stored_image_open, submission) for submission in submissions],
            blocks,
            sha256s=[feature_cache_key(submission) for submission in submissions],
            cache=cache,
            batch_size=batch_size,
            loader_threads=loader_threads,
            failures=unreadable,
        )
    except SoftTimeLimitExceeded:
        raise
    except Exception:
        if len(submissions) == 1:
            logger.exception("attribution failed for image %s", submissions[0].sha256)
            return ["the model could not process this image"]
        return [
            result
            for submission in submissions
            for result in _attribute(attributor, [submission], cache, batch_size=1, loader_threads=0)
        ]
    readable = [row for row in range(len(submissions)) if row not in unreadable]
    attributions = iter(attributor.attribute_features(concat_blocks(features, blocks)[readable]))
    return [
        _unreadable_reason(submissions[row], unreadable[row]) if row in unreadable else next(attributions)
        for row in range(len(submissions))
    ]


def _unreadable_reason(submission: Submission, error: Exception) -> str:
    """What the user reads when a stored image cannot be opened: what happened, in words, never a server
    path or the filesystem's message (the log keeps those)."""
    logger.warning("stored image of submission %s could not be read: %r", submission.pk, error)
    if isinstance(error, ImageRejected):  # the upload checks' own words, written for the user
        return f"the stored image could not be read: {error}"
    if isinstance(error, FileNotFoundError):
        return "the stored image is missing"
    return "the stored image could not be read"


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
            judged = []
            for submission, result in zip(submissions, results, strict=True):
                if isinstance(result, str):
                    failures[submission.pk] = result
                    continue
                judged.append(
                    (
                        submission,
                        {
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
                            **_unknown_features(result, blocks=attributor.blocks),
                        },
                    )
                )
            verdicts = verdicts_store(head_version=head_version, verdicts=judged)
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


def verdict_feature_space(*, backbone: str, blocks: Sequence[int]) -> str:
    """The space a verdict's stored features live in (`Verdict.feature_space`): the backbone's identity and the
    head's blocks, e.g. "ViT-B-16/laion2b_s34b_b88k|7,8". Features of one space compare; of two, never."""
    return f"{backbone}|{','.join(str(int(block)) for block in blocks)}"


def _unknown_features(result: Attribution, *, blocks: Sequence[int]) -> dict[str, Any]:
    """For an image rejected as unknown, the features the head judged (unit length, float32 bytes) and their
    space, kept for the unknown pile's clustering (webapp.feedback); nothing for a real or known verdict."""
    if result.decision != Verdict.Decision.UNKNOWN_GENERATOR or result.features is None:
        return {}
    return {
        "features": np.asarray(result.features, dtype="<f4").tobytes(),
        "feature_space": verdict_feature_space(backbone=result.backbone, blocks=blocks),
    }


def verdict_store(
    *, submission: Submission, head_version: HeadVersion, **fields: Any
) -> tuple[Verdict, bool]:
    """Store what `head_version` said about `submission` (`verdicts_store` for one). Returns the verdict
    and whether it is new."""
    existing = Verdict.objects.filter(submission=submission, head_version=head_version).first()
    if existing is not None:
        return existing, False
    (verdict,) = verdicts_store(head_version=head_version, verdicts=[(submission, fields)])
    return verdict, True


def verdicts_store(
    *, head_version: HeadVersion, verdicts: Sequence[tuple[Submission, dict[str, Any]]]
) -> list[Verdict]:
    """Store what `head_version` said about each submission, once (a submission it has already judged keeps
    its first verdict), and make each new verdict the latest of its submission and of that submission's
    duplicates, all in one transaction: the history's filters read those fields, never a stale copy.

    Each item is a submission and the Verdict's fields: label, decision, score, threshold, probabilities,
    nearest_references, backbone, pretrained, elapsed_ms, and for an unknown verdict features and feature_space.
    Returns the verdicts in the order given.
    """
    with transaction.atomic():
        existing = {
            verdict.submission_id: verdict
            for verdict in Verdict.objects.filter(
                head_version=head_version, submission_id__in=[submission.pk for submission, _ in verdicts]
            )
        }
        new = [
            Verdict(submission=submission, head_version=head_version, **fields)
            for submission, fields in verdicts
            if submission.pk not in existing
        ]
        Verdict.objects.bulk_create(new, batch_size=1000)
        judged = [verdict.submission_id for verdict in new]
        # One set-based UPDATE each (a lookup by the (submission, head version) index per row), not a
        # CASE per row: the new verdict's fields onto its submission, then onto that submission's duplicates.
        this_head = Verdict.objects.filter(submission_id=OuterRef("pk"), head_version=head_version)
        for start in range(0, len(judged), 1000):
            Submission.objects.filter(pk__in=judged[start : start + 1000]).update(
                **{key: Subquery(this_head.values(column)[:1]) for key, column in _LATEST_VERDICT_COLUMNS.items()}
            )
        originals = Submission.objects.filter(pk=OuterRef("duplicate_of_id"))
        for start in range(0, len(judged), 1000):
            Submission.objects.filter(duplicate_of_id__in=judged[start : start + 1000]).update(
                **{key: Subquery(originals.values(key)[:1]) for key in _LATEST_VERDICT_COLUMNS}
            )
        _provenance_agreements_store(new)
        existing |= {verdict.submission_id: verdict for verdict in new}
    return [existing[submission.pk] for submission, _ in verdicts]


def _provenance_agreements_store(verdicts: Sequence[Verdict]) -> None:
    """Record on each new verdict's submission, and on its duplicates (the same file), whether the file's
    provenance agrees with that verdict: the history's provenance filter reads it."""
    if not verdicts:
        return
    stored = dict(
        Submission.objects.filter(pk__in=[v.submission_id for v in verdicts]).values_list("pk", "provenance")
    )
    aliases = generator_aliases()
    by_kind: dict[str, list[int]] = {}
    for verdict in verdicts:
        agreement = provenance_agreement(
            provenance=stored.get(verdict.submission_id) or {},
            decision=verdict.decision,
            label=verdict.label,
            aliases=aliases,
        )
        by_kind.setdefault(agreement.agreement, []).append(verdict.submission_id)
    for kind, ids in by_kind.items():
        Submission.objects.filter(Q(pk__in=ids) | Q(duplicate_of_id__in=ids)).update(provenance_agreement=kind)


@functools.lru_cache(maxsize=4)
def _trust_anchors(path: str) -> str | None:
    """The PEM bundle named by C2PA_TRUST_ANCHORS, read once per process; None when unset or unreadable
    (every signer is then untrusted, and the log says why)."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as bundle:
            return bundle.read()
    except (OSError, UnicodeDecodeError):
        logger.exception("C2PA_TRUST_ANCHORS %r could not be read: no C2PA signer is trusted", path)
        return None


def _provenance_read(file: IO[bytes]) -> tuple[dict[str, Any], str]:
    """What the uploaded file says about its origin, as stored on the submission ({"claims", "c2pa"}), and its
    C2PA manifest's validation ("" without one). Bounded in size and time by the engine; a damaged or hostile
    manifest is a finding in the result, and nothing here fails an upload. The file is rewound after."""
    read = partial(read_provenance, max_file_bytes=settings.UPLOAD_MAX_BYTES, timeout_s=settings.PROVENANCE_TIMEOUT_S)
    try:
        try:
            provenance = read(file, trust_anchors_pem=_trust_anchors(settings.C2PA_TRUST_ANCHORS))
        except ValueError:
            logger.exception("C2PA_TRUST_ANCHORS is not a usable PEM bundle: no C2PA signer is trusted")
            provenance = read(file)
    except SoftTimeLimitExceeded:
        raise
    except Exception:  # the reader's own bug must not refuse an image the upload checks accepted
        logger.exception("provenance could not be read")
        provenance = Provenance()
    finally:
        file.seek(0)
    stored = provenance.as_dict()
    return {"claims": stored["claims"], "c2pa": stored["c2pa"]}, provenance.c2pa.validation if provenance.c2pa else ""


# The submission's latest-verdict fields and the Verdict columns they copy.
_LATEST_VERDICT_COLUMNS = {
    "verdict_id": "id",
    "verdict_decision": "decision",
    "verdict_label": "label",
    "verdict_score": "score",
    "verdict_head_version_id": "head_version_id",
}


def _latest_verdict_fields(verdict: Verdict | None) -> dict[str, Any]:
    """The fields of a submission that hold its latest verdict, as that verdict gives them."""
    return {
        "verdict_id": verdict.pk if verdict else None,
        "verdict_decision": verdict.decision if verdict else "",
        "verdict_label": verdict.label if verdict else "",
        "verdict_score": verdict.score if verdict else None,
        "verdict_head_version_id": verdict.head_version_id if verdict else None,
    }


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
            batch_size=batch_size or settings.ATTRIBUTION_BATCH_SIZE or 32,
            loader_threads=loader_threads,
        )
    ]


def submissions_reattribute(
    *,
    actor: AbstractBaseUser | AnonymousUser | None,
    team: Team,
    case: Case | None = None,
    since: datetime | None = None,
) -> int:
    """Queue the team's submissions of `case`, or uploaded since `since`, for a verdict by the active head.

    Submissions in flight, duplicates (their original carries the verdict) and those the active head has
    already judged are left out. Returns how many were queued.
    """
    active = head_version_active()
    if active is None:
        raise ReattributionRefused("No head is active: activate a head version first.")
    if case is None and since is None:
        raise ReattributionRefused("Choose a case or a date to re-attribute from.")
    if case is not None and case.team_id != team.pk:
        raise ReattributionRefused("That case belongs to another team.")
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


def head_version_activate_and_reattribute(
    *, head_version: HeadVersion, actor: User, confirm_worse: bool
) -> int:
    """Activate `head_version` (with the confirmation page's check: RegistryError when it is worse than the
    active head and `confirm_worse` is not given) and queue the submissions of every open case for it, as one
    transaction. Returns how many were queued."""
    with transaction.atomic():
        head_version_activate_reviewed(head_version=head_version, actor=actor, confirm_worse=confirm_worse)
        return sum(
            submissions_reattribute(actor=actor, team=case.team, case=case)
            for case in Case.objects.filter(status=Case.Status.OPEN).select_related("team")
        )


# --- the analyst's confirmation of a verdict ----------------------------------------------------------------

CONFIRMATION_LABEL_MAX = 100
CONFIRMATION_NOTE_MAX = 2000
CONFIRMATION_ACTIONS = {Confirmation.Status.CONFIRMED: "confirm", Confirmation.Status.DISPUTED: "dispute"}


class ConfirmationRefused(ValueError):
    """A confirmation that cannot be recorded; the message says why, for the user, and `field` names the input
    it is about ("status", "label", "note", or "detail" for the submission itself)."""

    def __init__(self, message: str, *, field: str = "detail") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ConfirmationLabel:
    """What an analyst says an image is: a registered class (`generator`, or the class "real" without a row),
    another generator in words (`registered` False), or nothing ("")."""

    label: str
    generator: Generator | None
    registered: bool

    @property
    def words(self) -> str:
        return self.generator.name if self.generator is not None else self.label


def _text_check(text: str, *, field: str, limit: int, allowed: str = "") -> None:
    if len(text) > limit:
        raise ConfirmationRefused(f"At most {limit} characters (this one has {len(text)}).", field=field)
    # Control and format characters (NUL, escapes, bidirectional overrides) hide or reorder what a reader sees.
    if any(unicodedata.category(char).startswith("C") and char not in allowed for char in text):
        raise ConfirmationRefused("Control characters are not allowed.", field=field)


def confirmation_label_resolve(*, label: str) -> ConfirmationLabel:
    """A label as an analyst typed or chose it: a registered generator by slug (any case) or by name (exactly,
    else in any case when only one matches) gives that generator and its slug; "real" is the class real;
    anything else names another generator in words (stripped, at most 100 characters, no control characters)."""
    text = label.strip()
    if not text:
        return ConfirmationLabel("", None, registered=False)
    _text_check(text, field="label", limit=CONFIRMATION_LABEL_MAX)
    generator = (
        Generator.objects.filter(slug__iexact=text).first()
        or Generator.objects.filter(name=text).first()
    )
    if generator is None:
        by_name = list(Generator.objects.filter(name__iexact=text)[:2])
        generator = by_name[0] if len(by_name) == 1 else None
    if generator is not None:
        return ConfirmationLabel(generator.slug, generator, registered=True)
    if text.lower() == Generator.REAL_SLUG:
        return ConfirmationLabel(Generator.REAL_SLUG, None, registered=True)
    return ConfirmationLabel(text, None, registered=False)


def _verdict_label(verdict: Verdict) -> ConfirmationLabel:
    """What the verdict says the image is, as a confirmation's label ("" for an unregistered source)."""
    if verdict.decision == Verdict.Decision.UNKNOWN_GENERATOR:
        return ConfirmationLabel("", None, registered=False)
    return ConfirmationLabel(verdict.label, Generator.objects.filter(slug=verdict.label).first(), registered=True)


def _confirmation_label(*, verdict: Verdict, status: str, given: ConfirmationLabel) -> ConfirmationLabel:
    """The label to store: the verdict's own for a confirmation without one; otherwise the analyst's, refused
    where it contradicts the status (a confirmation naming another class than the verdict, a dispute naming the
    same)."""
    unknown = verdict.decision == Verdict.Decision.UNKNOWN_GENERATOR
    confirmed = status == Confirmation.Status.CONFIRMED
    if not given.label:
        return _verdict_label(verdict) if confirmed else given
    if unknown:
        if confirmed and given.registered:
            raise ConfirmationRefused(
                f"The verdict says the image matches no registered class, and {given.words} is registered: "
                "dispute the verdict to say the head missed it.",
                field="label",
            )
        if not confirmed and not given.registered:
            raise ConfirmationRefused(
                f"The verdict says the image comes from an unregistered source, as {given.words} is: confirm the "
                "verdict instead (or name the registered class the image belongs to).",
                field="label",
            )
        return given
    same = given.label.lower() == verdict.label.lower()
    if confirmed and not same:
        raise ConfirmationRefused(
            f"The verdict says {verdict.label}: to say the image is {given.words}, dispute the verdict.",
            field="label",
        )
    if not confirmed and same:
        raise ConfirmationRefused(
            f"The verdict already says {verdict.label}: confirm it instead, or name what the image is.",
            field="label",
        )
    return given


def _confirmation_store(
    *, submission: Submission, actor: User, status: str, label: ConfirmationLabel, note: str
) -> tuple[Confirmation, bool]:
    """One confirmation, inside the caller's transaction: the submission's row is locked, the verdict judged is
    its latest (its original's, for a duplicate), and `confirmation_status` follows."""
    locked = Submission.objects.select_for_update().get(pk=submission.pk)
    verdict = (
        Verdict.objects.filter(submission_id=locked.duplicate_of_id or locked.pk)
        .order_by("-created_at", "-id")
        .first()
    )
    if verdict is None:
        raise ConfirmationRefused(
            f"#{locked.pk} {locked.original_name} has no verdict yet: confirm or dispute it once it is analysed."
        )
    stored = _confirmation_label(verdict=verdict, status=status, given=label)
    previous = Confirmation.objects.filter(submission=locked).first()
    before = {"status": previous.status, "label": previous.label} if previous is not None else None
    confirmation, created = Confirmation.objects.update_or_create(
        submission=locked,
        defaults={
            "status": status,
            "label": stored.label,
            "generator": stored.generator,
            "note": note,
            "verdict": verdict,
            "confirmed_by": actor,
        },
    )
    Submission.objects.filter(pk=locked.pk).update(confirmation_status=status)
    audit_record(
        actor=actor,
        action=CONFIRMATION_ACTIONS[Confirmation.Status(status)],
        team=locked.team,
        target=locked,
        detail={
            "status": status,
            "label": stored.label,
            "generator": stored.generator.slug if stored.generator is not None else None,
            "verdict": verdict.pk,
            "head_version": verdict.head_version.version,
            "note": note[:200],
            "previous": before,
        },
    )
    return confirmation, created


def _confirmation_input(
    *, actor: User, team: Team, status: str, label: str, note: str
) -> tuple[ConfirmationLabel, str]:
    if not user_may_confirm(user=actor, team=team):
        raise ConfirmationRefused(CONFIRM_MESSAGE)
    if status not in Confirmation.Status.values:
        raise ConfirmationRefused("Choose confirmed or disputed.", field="status")
    note = note.strip()
    _text_check(note, field="note", limit=CONFIRMATION_NOTE_MAX, allowed="\n\r\t")
    return confirmation_label_resolve(label=label), note


def submission_confirm(
    *, submission: Submission, actor: User, status: str, label: str = "", note: str = ""
) -> tuple[Confirmation, bool]:
    """Record what a member of the submission's team says of its latest verdict: `status` "confirmed" (the
    verdict is right; without a label, the label is the verdict's: its class, or "" for an unrecognised image,
    meaning an unregistered source) or "disputed" (the verdict is wrong; `label`, when given, says what the image
    is). A label names a registered generator (`confirmation_label_resolve`) or another one in words. It replaces
    the submission's earlier confirmation; the audit log keeps each ("confirm", "dispute").

    Returns the confirmation and whether it is the submission's first. Raises ConfirmationRefused."""
    resolved, note = _confirmation_input(actor=actor, team=submission.team, status=status, label=label, note=note)
    with transaction.atomic():
        return _confirmation_store(submission=submission, actor=actor, status=status, label=resolved, note=note)


def submissions_confirm(
    *, team: Team, actor: User, submission_ids: Sequence[int], status: str, label: str = "", note: str = ""
) -> list[Confirmation]:
    """`submission_confirm` for each of the team's submissions among `submission_ids` (the history's selection),
    all or none: an id of another team (or of nothing), or a submission that cannot be confirmed, refuses the
    whole selection (the message never says which ids exist elsewhere)."""
    resolved, note = _confirmation_input(actor=actor, team=team, status=status, label=label, note=note)
    ids = sorted(set(submission_ids))
    with transaction.atomic():
        found = list(Submission.objects.filter(team=team, pk__in=ids).order_by("pk"))
        if not ids or len(found) != len(ids):
            raise ConfirmationRefused("Some of the selected submissions are not your team's.")
        return [
            _confirmation_store(submission=submission, actor=actor, status=status, label=resolved, note=note)[0]
            for submission in found
        ]


def submission_confirmation_clear(*, submission: Submission, actor: User) -> bool:
    """Withdraw the submission's confirmation (audit "confirmation_clear"); False when it had none."""
    if not user_may_confirm(user=actor, team=submission.team):
        raise ConfirmationRefused(CONFIRM_MESSAGE)
    with transaction.atomic():
        locked = Submission.objects.select_for_update().get(pk=submission.pk)
        previous = Confirmation.objects.filter(submission=locked).first()
        if previous is None:
            return False
        previous.delete()
        Submission.objects.filter(pk=locked.pk).update(confirmation_status="")
        audit_record(
            actor=actor,
            action="confirmation_clear",
            team=locked.team,
            target=locked,
            detail={"status": "", "label": "", "previous": {"status": previous.status, "label": previous.label}},
        )
    return True
