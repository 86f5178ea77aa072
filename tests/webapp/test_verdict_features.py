"""The worker's service keeps the features of what it rejects as unknown: `verdict_create_batch` run here
in-process on the real engine (the task's own call), with the active head's threshold moved so that the same
images are rejected, or all accepted."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth.models import User

from attribution.openset import l2_join, l2_normalize
from attribution.predict import Attributor
from attribution.synth import DEFAULT_KNOWN, DEFAULT_UNKNOWN
from tests.fixtures_registry import image_features
from tests.webapp import uploaded
from webapp.registry.models import HeadVersion
from webapp.submissions.models import Submission, Verdict
from webapp.submissions.services import submission_create, verdict_create_batch, verdict_feature_space
from webapp.teams.models import Team


@pytest.fixture
def attributor(active_head: HeadVersion) -> Attributor:
    from workers.runtime import load_attributor

    return load_attributor(
        head_version_id=active_head.pk, version=active_head.version, artifact_name=active_head.artifact.name
    ).attributor


def with_threshold(attributor: Attributor, threshold: float) -> Attributor:
    """The same backbone and head, with another threshold (the loaded head, shared, is left as it is)."""
    return Attributor(attributor.backbone, replace(attributor.head, threshold=threshold), nearest_k=2)


def upload(team: Team, user: User, paths: list[Path]) -> list[Submission]:
    return [
        submission_create(team=team, user=user, uploaded_file=uploaded(path.name, path.read_bytes())) for path in paths
    ]


def test_an_unknown_verdict_keeps_the_features_the_head_judged_and_their_space(
    team_a: Team,
    bob: User,
    synth_dir: Path,
    active_head: HeadVersion,
    attributor: Attributor,
    engine,  # type: ignore[no-untyped-def]
) -> None:
    paths = [sorted((synth_dir / name).glob("*.png"))[12] for name in (DEFAULT_UNKNOWN[0], DEFAULT_KNOWN[1])]
    submissions = upload(team_a, bob, paths)

    verdicts = verdict_create_batch(
        submission_ids=[s.pk for s in submissions],
        head_version=active_head,
        attributor=with_threshold(attributor, float("inf")),  # nothing is recognised
        feature_cache=engine[1],
    )

    assert {v.decision for v in verdicts} == {Verdict.Decision.UNKNOWN_GENERATOR}
    blocks = attributor.blocks
    expected = l2_normalize(l2_join(image_features(paths, engine), len(blocks)))
    for submission, row in zip(submissions, expected, strict=True):
        verdict = Verdict.objects.get(submission=submission)
        stored = np.frombuffer(bytes(verdict.features), dtype="<f4")
        assert stored.shape == (engine[0].width * len(blocks),)
        assert np.linalg.norm(stored) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(stored, row, atol=1e-5)
        assert verdict.feature_space == verdict_feature_space(backbone=active_head.backbone, blocks=blocks)
        assert verdict.feature_space == f"ViT-S-16/random-seed0|{','.join(map(str, blocks))}"


def test_real_and_known_verdicts_keep_no_features(
    team_a: Team,
    bob: User,
    synth_dir: Path,
    active_head: HeadVersion,
    attributor: Attributor,
    engine,  # type: ignore[no-untyped-def]
) -> None:
    paths = [sorted((synth_dir / name).glob("*.png"))[13] for name in ("real", DEFAULT_KNOWN[2])]
    submissions = upload(team_a, bob, paths)

    verdict_create_batch(
        submission_ids=[s.pk for s in submissions],
        head_version=active_head,
        attributor=with_threshold(attributor, float("-inf")),  # everything is recognised
        feature_cache=engine[1],
    )

    for verdict in Verdict.objects.filter(submission__in=submissions):
        assert verdict.decision in (Verdict.Decision.REAL, Verdict.Decision.KNOWN_GENERATOR)
        assert (verdict.features, verdict.feature_space) == (None, "")
