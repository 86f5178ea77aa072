"""Promises of the submission services that nothing else pinned down: one verdict per submission and head
version at the database, a group whose forward pass breaks on one image still gives the others their
verdicts, and the worker's own pixel limit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from attribution.backbone import Backbone
from attribution.images import open_image
from attribution.predict import Attributor
from tests.webapp import head_version_row, image_bytes, uploaded
from tests.webapp.test_submission_attribution import attributor, synth_image, upload_file  # noqa: F401
from webapp.registry.models import HeadVersion
from webapp.submissions.models import Submission, Verdict
from webapp.submissions.services import submission_create, verdict_create_batch
from webapp.teams.models import Team

Status = Submission.Status


def verdict_insert(submission: Submission, head: HeadVersion, label: str) -> Verdict:
    """A plain INSERT of a verdict row, past any service that would look for an existing one first."""
    return Verdict.objects.create(
        submission=submission, head_version=head, label=label, decision="known_generator", score=0.9,
        threshold=head.threshold, probabilities={label: 0.9}, backbone=head.backbone, pretrained=False,
        elapsed_ms=1.0,
    )


def test_the_database_refuses_a_second_verdict_for_the_same_submission_and_head_version(
    team_a: Team, bob: User
) -> None:
    # On SQLite the worker takes no row locks: this constraint is all that stops two verdicts.
    head, other = head_version_row(1), head_version_row(2)
    submission = submission_create(team=team_a, user=bob, uploaded_file=uploaded("v.png", image_bytes(seed=900)))
    verdict_insert(submission, head, "gan-a")
    with pytest.raises(IntegrityError), transaction.atomic():
        verdict_insert(submission, head, "diffusion-b")
    verdict_insert(submission, other, "diffusion-b")  # another head version: allowed
    assert Verdict.objects.filter(submission=submission).count() == 2


class PassBreaksOn:
    """The real backbone, except that a forward pass holding one given image raises, as a pass does
    when one image breaks it (its rows reach the model, unlike an image that cannot be read)."""

    def __init__(self, backbone: Backbone, poison: torch.Tensor) -> None:
        self._backbone = backbone
        self.poison = poison
        self.passes: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._backbone, name)

    def extract(self, images: torch.Tensor, blocks: list[int]) -> dict[int, object]:
        self.passes.append(len(images))
        if any(torch.equal(row, self.poison) for row in images):
            raise RuntimeError("the pass broke on this image")
        return self._backbone.extract(images, blocks)


def test_a_group_whose_pass_breaks_on_one_image_still_gives_the_others_their_verdicts(
    team_a: Team, bob: User, synth_dir: Path, active_head: HeadVersion, attributor: Attributor  # noqa: F811
) -> None:
    paths = [synth_image(synth_dir, "real", 12 + i) for i in range(4)]
    submissions = [upload_file(team_a, bob, path) for path in paths]
    poison = attributor.backbone.preprocess(open_image(paths[2]))
    backbone = PassBreaksOn(attributor.backbone, poison)
    breaking = Attributor(backbone, attributor.head, nearest_k=attributor.nearest_k)  # type: ignore[arg-type]

    verdicts = verdict_create_batch(
        submission_ids=[s.pk for s in submissions], head_version=active_head, attributor=breaking, batch_size=8
    )

    # One pass of the four, then each image alone.
    assert backbone.passes == [4, 1, 1, 1, 1]
    good = [s.pk for i, s in enumerate(submissions) if i != 2]
    assert sorted(v.submission_id for v in verdicts) == good
    for submission in submissions:
        submission.refresh_from_db()
    assert [s.status for s in submissions] == [Status.DONE, Status.DONE, Status.FAILED, Status.DONE]
    assert submissions[2].error == (
        "the model could not process this image"
    )
    # The verdicts of the others are the ones the real model gives them.
    expected = attributor.attribute([open_image(paths[i]) for i in (0, 1, 3)])
    by_submission = {v.submission_id: v for v in verdicts}
    for pk, attribution in zip(good, expected, strict=True):
        assert (by_submission[pk].label, by_submission[pk].decision) == (attribution.label, attribution.decision)


def test_the_worker_refuses_an_image_over_the_projects_pixel_limit(
    team_a: Team, bob: User, active_head: HeadVersion, attributor: Attributor, settings  # noqa: F811
) -> None:
    # Accepted at upload under the limit of the day; the limit is lowered before a worker opens it (a
    # stored file, an older upload, a changed setting): the worker applies the project's limit itself,
    # far below Pillow's own (about 89 million pixels, warnings aside).
    big = submission_create(
        team=team_a, user=bob, uploaded_file=uploaded("big.png", image_bytes(size=(120, 100), seed=901))
    )
    small = submission_create(
        team=team_a, user=bob, uploaded_file=uploaded("small.png", image_bytes(size=(100, 100), seed=902))
    )
    settings.UPLOAD_MAX_PIXELS = 100 * 100

    verdicts = verdict_create_batch(
        submission_ids=[big.pk, small.pk], head_version=active_head, attributor=attributor
    )

    assert [v.submission_id for v in verdicts] == [small.pk]
    big.refresh_from_db()
    assert big.status == Status.FAILED
    assert big.error == (
        "the stored image could not be read: image too large: 120 x 100 pixels exceeds the limit of 10000"
    )
