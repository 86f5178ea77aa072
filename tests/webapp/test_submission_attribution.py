"""verdict_create_batch: the service the attribution task calls, run here in-process on the real engine."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

from attribution.images import open_image
from attribution.predict import Attributor
from attribution.synth import DEFAULT_KNOWN, DEFAULT_UNKNOWN
from tests.webapp import image_bytes, uploaded
from webapp.registry.models import HeadVersion
from webapp.submissions.models import Submission, Verdict
from webapp.submissions.services import feature_cache_key, submission_create, verdict_create_batch
from webapp.teams.models import Team


@pytest.fixture
def attributor(active_head: HeadVersion) -> Attributor:
    from workers.runtime import load_attributor

    return load_attributor(
        head_version_id=active_head.pk, version=active_head.version, artifact_name=active_head.artifact.name
    ).attributor


def upload_file(team: Team, user: User, path: Path) -> Submission:
    return submission_create(team=team, user=user, uploaded_file=uploaded(path.name, path.read_bytes()))


def synth_image(synth_dir: Path, label: str, index: int = 0) -> Path:
    return sorted((synth_dir / label).glob("*.png"))[index]


def test_it_stores_one_verdict_per_submission_and_finishes_them(
    team_a: Team, bob: User, synth_dir: Path, active_head: HeadVersion, attributor: Attributor, engine
) -> None:
    known = synth_image(synth_dir, DEFAULT_KNOWN[1])
    paths = [known, synth_image(synth_dir, DEFAULT_UNKNOWN[0]), synth_image(synth_dir, "real", 3)]
    submissions = [upload_file(team_a, bob, path) for path in paths]

    verdicts = verdict_create_batch(
        submission_ids=[s.pk for s in submissions],
        head_version=active_head,
        attributor=attributor,
        feature_cache=engine[1],
    )

    assert sorted(v.submission_id for v in verdicts) == sorted(s.pk for s in submissions)
    expected = attributor.attribute([open_image(path) for path in paths])
    for submission, attribution in zip(submissions, expected, strict=True):
        submission.refresh_from_db()
        assert submission.status == Submission.Status.DONE and submission.attempts == 1
        assert submission.started_at <= submission.finished_at
        verdict = Verdict.objects.get(submission=submission)
        assert (verdict.label, verdict.decision) == (attribution.label, attribution.decision)
        assert verdict.score == pytest.approx(attribution.score, abs=1e-4)
        assert verdict.threshold == pytest.approx(active_head.threshold)
        assert set(verdict.probabilities) == set(active_head.classes)
        assert sum(verdict.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert (verdict.head_version, verdict.backbone, verdict.pretrained) == (
            active_head,
            "ViT-S-16/random-seed0",
            False,
        )
        assert len(verdict.nearest_references) == settings.ATTRIBUTION_NEAREST_K
        assert verdict.elapsed_ms > 0
    # The known generator's image is one of its references: the evidence finds it, identical.
    nearest = Verdict.objects.get(submission=submissions[0]).nearest_references[0]
    assert (nearest["sha256"], nearest["label"]) == (submissions[0].sha256, DEFAULT_KNOWN[1])
    assert nearest["similarity"] == pytest.approx(1.0, abs=1e-2)
    # Features went through the cache, keyed by the team and the image's SHA-256.
    backbone, cache = engine
    assert cache.get(feature_cache_key(submissions[1]), backbone.identity, attributor.blocks[0]) is not None

    # The same task delivered again finds nothing left to do.
    ids = [s.pk for s in submissions]
    assert verdict_create_batch(submission_ids=ids, head_version=active_head, attributor=attributor) == []
    # Redelivered after a worker died between writing the verdicts and acknowledging the task:
    # the verdicts are found again, never made twice.
    Submission.objects.filter(pk__in=ids).update(status=Submission.Status.PROCESSING)
    again = verdict_create_batch(submission_ids=ids, head_version=active_head, attributor=attributor)
    assert sorted(v.pk for v in again) == sorted(v.pk for v in verdicts)
    assert Verdict.objects.count() == 3
    assert set(Submission.objects.values_list("status", "attempts")) == {(Submission.Status.DONE, 2)}


def test_each_failure_stays_with_its_own_image(
    team_a: Team, bob: User, synth_dir: Path, active_head: HeadVersion, attributor: Attributor
) -> None:
    good = upload_file(team_a, bob, synth_image(synth_dir, "real", 1))
    damaged = upload_file(team_a, bob, synth_image(synth_dir, "real", 2))
    default_storage.delete(damaged.image.name)
    assert (
        default_storage.save(damaged.image.name, ContentFile(b"\x89PNG\r\n\x1a\n damaged"))
        == damaged.image.name
    )
    gone = submission_create(team=team_a, user=bob, uploaded_file=uploaded("gone.png", image_bytes(seed=30)))
    default_storage.delete(gone.image.name)
    # An image that took its worker down on every try so far.
    poison = submission_create(team=team_a, user=bob, uploaded_file=uploaded("p.png", image_bytes(seed=31)))
    Submission.objects.filter(pk=poison.pk).update(
        status=Submission.Status.PROCESSING, attempts=settings.SUBMISSION_MAX_ATTEMPTS
    )
    duplicate = upload_file(team_a, bob, synth_image(synth_dir, "real", 1))
    failed = submission_create(team=team_a, user=bob, uploaded_file=uploaded("f.png", image_bytes(seed=33)))
    Submission.objects.filter(pk=failed.pk).update(status=Submission.Status.FAILED, error="earlier failure")

    verdicts = verdict_create_batch(
        submission_ids=[s.pk for s in (good, damaged, gone, poison, duplicate, failed)],
        head_version=active_head,
        attributor=attributor,
    )

    assert [v.submission_id for v in verdicts] == [good.pk]
    for submission in (good, damaged, gone, poison, duplicate, failed):
        submission.refresh_from_db()
    assert good.status == Submission.Status.DONE
    assert damaged.status == Submission.Status.FAILED
    assert damaged.error.startswith("the stored image could not be read: truncated or corrupt image")
    # What happened, in words: no server path, no message of the filesystem's.
    assert gone.status == Submission.Status.FAILED and gone.error == "the stored image is missing"
    assert poison.status == Submission.Status.FAILED
    assert (
        poison.error
        == f"gave up after {settings.SUBMISSION_MAX_ATTEMPTS} attempts: no worker finished this image"
    )
    # Left alone: the duplicate shows the original's verdict, the failed one keeps its reason.
    assert (duplicate.status, duplicate.attempts, duplicate.duplicate_of_id) == (
        Submission.Status.DONE,
        0,
        good.pk,
    )
    assert (failed.status, failed.error, failed.attempts) == (Submission.Status.FAILED, "earlier failure", 0)
    assert Verdict.objects.count() == 1


@pytest.mark.skipif(
    not connection.features.has_select_for_update_skip_locked,
    reason="POSTGRESQL UNAVAILABLE: row locks need PostgreSQL (CI runs it)",
)
def test_a_second_delivery_skips_submissions_another_worker_is_on(
    transactional_db: None,
    team_a: Team,
    bob: User,
    synth_dir: Path,
    active_head: HeadVersion,
    attributor: Attributor,
) -> None:
    submission = upload_file(team_a, bob, synth_image(synth_dir, "real", 7))
    inside, release = threading.Event(), threading.Event()

    class Held(Attributor):
        """The real attributor, held mid-batch until the second delivery has come and gone."""

        def attribute_features(self, features):  # type: ignore[no-untyped-def]
            inside.set()
            release.wait(30)
            return super().attribute_features(features)

    held = Held(attributor.backbone, attributor.head, nearest_k=attributor.nearest_k)
    results: dict[str, list[Verdict]] = {}

    def first_worker() -> None:
        try:
            results["first"] = verdict_create_batch(
                submission_ids=[submission.pk], head_version=active_head, attributor=held
            )
        finally:
            connection.close()

    thread = threading.Thread(target=first_worker)
    thread.start()
    assert inside.wait(60)
    second = verdict_create_batch(
        submission_ids=[submission.pk], head_version=active_head, attributor=attributor
    )
    release.set()
    thread.join(60)

    assert second == [] and len(results["first"]) == 1
    submission.refresh_from_db()
    assert (submission.status, submission.attempts) == (Submission.Status.DONE, 1)
    assert Verdict.objects.filter(submission=submission).count() == 1


class WorkerDied(BaseException):
    """What a worker killed mid-batch looks like from inside: nothing after it runs."""


class DiesOnPass(Attributor):
    """The real attributor, in a worker that dies during its n-th forward pass."""

    def __init__(self, attributor: Attributor, *, n: int) -> None:
        super().__init__(attributor.backbone, attributor.head, nearest_k=attributor.nearest_k)
        self.n = n
        self.passes: list[int] = []

    def attribute_features(self, features):  # type: ignore[no-untyped-def]
        self.passes.append(len(features))
        if len(self.passes) == self.n:
            raise WorkerDied
        return super().attribute_features(features)


def test_after_a_crash_the_retries_go_one_at_a_time_so_a_poison_image_fails_alone(
    team_a: Team, bob: User, synth_dir: Path, active_head: HeadVersion, attributor: Attributor, settings
) -> None:
    settings.SUBMISSION_MAX_ATTEMPTS = 2
    ids = [upload_file(team_a, bob, synth_image(synth_dir, "real", 8 + i)).pk for i in range(3)]

    def state() -> list[tuple[str, int]]:
        return list(Submission.objects.filter(pk__in=ids).order_by("id").values_list("status", "attempts"))

    # First delivery: the three in one pass, and the worker dies in it.
    first = DiesOnPass(attributor, n=1)
    with pytest.raises(WorkerDied):
        verdict_create_batch(submission_ids=ids, head_version=active_head, attributor=first)
    assert first.passes == [3] and state() == [("processing", 1)] * 3

    # Redelivered: one image at a time now. The first is done and kept; the worker dies on the second.
    second = DiesOnPass(attributor, n=2)
    with pytest.raises(WorkerDied):
        verdict_create_batch(submission_ids=ids, head_version=active_head, attributor=second)
    assert second.passes == [1, 1]
    assert state() == [("done", 2), ("processing", 2), ("processing", 1)]

    # Redelivered again: the image that killed the worker twice has no attempt left; the last one is done.
    verdicts = verdict_create_batch(submission_ids=ids, head_version=active_head, attributor=attributor)
    assert [v.submission_id for v in verdicts] == [ids[2]]
    assert state() == [("done", 2), ("failed", 2), ("done", 2)]
