"""The open-set decision at its boundary: a score equal to the threshold is accepted as known, the next
float below it is refused as an unknown generator. The thresholds are set from the scores the attributor
reports, so the test pins the rule ("unknown when score < threshold") without restating it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from attribution.artifact import HeadArtifact
from attribution.backbone import Backbone, load_backbone
from attribution.config import OFFLINE_BACKBONE
from attribution.predict import Attributor
from attribution.training import TrainConfig, train_head

BLOCKS = [0]
PER_CLASS = 6


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return load_backbone(OFFLINE_BACKBONE)


@pytest.fixture(scope="module")
def head_and_features(backbone: Backbone) -> tuple[HeadArtifact, np.ndarray]:
    # Three well separated classes of seeded feature vectors: the head needs no images to be a head.
    rng = np.random.default_rng(7)
    labels = [c for c in ("real", "gen-a", "gen-b") for _ in range(PER_CLASS)]
    centres = {c: rng.normal(0, 1, backbone.width) * 4 for c in ("real", "gen-a", "gen-b")}
    features = np.stack([centres[c] + rng.normal(0, 1, backbone.width) for c in labels]).astype(np.float32)
    result = train_head(features, labels, config=TrainConfig(c_grid=[1.0]))
    head = HeadArtifact(
        estimator=result.estimator,
        classes=list(result.estimator.classes_),
        backbone_identity=backbone.identity,
        model_name=backbone.config.model_name,
        pretrained_tag=None,
        pretrained=backbone.pretrained,
        blocks=BLOCKS,
        score_method="msp",
        threshold=result.threshold,
        hyperparameters=result.hyperparameters,
        metrics=result.metrics,
        reference_ids=[f"{i:064x}" for i in range(len(labels))],
        reference_labels=labels,
        reference_features=features,
    )
    return head, features


@pytest.mark.parametrize("row", [0, PER_CLASS])  # a "real" image and a known generator's
def test_a_score_exactly_at_the_threshold_is_known_and_just_below_is_unknown(
    backbone: Backbone, head_and_features: tuple[HeadArtifact, np.ndarray], row: int
) -> None:
    head, features = head_and_features
    one = features[row : row + 1]
    (first,) = Attributor(backbone, head).attribute_features(one)
    score = first.score
    known = "real" if first.label == "real" else "known_generator"

    at = Attributor(backbone, dataclasses.replace(head, threshold=score))
    (equal,) = at.attribute_features(one)
    assert equal.score == score == equal.threshold  # the very same float on both sides
    assert equal.decision == known

    above = Attributor(backbone, dataclasses.replace(head, threshold=float(np.nextafter(score, np.inf))))
    (below,) = above.attribute_features(one)
    assert below.score == score < below.threshold
    assert below.decision == "unknown_generator"

    under = Attributor(backbone, dataclasses.replace(head, threshold=float(np.nextafter(score, -np.inf))))
    (over,) = under.attribute_features(one)
    assert over.decision == known
