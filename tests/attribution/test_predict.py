"""The Attributor on the real offline backbone (ViT-S-16, seeded random weights) and a head trained
on features of small synthetic images: decisions, evidence and the backbone check."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attribution.artifact import HeadArtifact, HeadMismatchError
from attribution.backbone import Backbone, load_backbone
from attribution.config import OFFLINE_BACKBONE
from attribution.features import concat_blocks
from attribution.predict import Attribution, Attributor
from attribution.training import TrainConfig, train_head

BLOCKS = [2, 0]  # deliberately not sorted: features are concatenated in the head's order
PER_CLASS = 5
ROOT = Path(__file__).resolve().parents[2]


def _image(kind: str, rng: np.random.Generator) -> Image.Image:
    size = 48
    if kind == "real":  # a solid colour
        pixels = np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (size, size, 3))
    elif kind == "noise":  # uniform noise
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    else:  # stripes of a random period and colour
        period = int(rng.integers(2, 8))
        stripes = (np.arange(size) // period % 2).astype(np.uint8)[None, :, None]
        pixels = np.broadcast_to(stripes * rng.integers(0, 256, 3, dtype=np.uint8), (size, size, 3))
    return Image.fromarray(np.ascontiguousarray(pixels))


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return load_backbone(OFFLINE_BACKBONE)


@pytest.fixture(scope="module")
def trained(backbone: Backbone) -> tuple[HeadArtifact, list[Image.Image], np.ndarray]:
    rng = np.random.default_rng(0)
    kinds = ["real", "noise", "stripes"]
    labels = [kind for kind in kinds for _ in range(PER_CLASS)]
    images = [_image(kind, rng) for kind in labels]
    features = concat_blocks(backbone.extract(images, BLOCKS), BLOCKS)
    result = train_head(features, labels, config=TrainConfig(c_grid=[0.01, 1.0, 100.0]))
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
        reference_ids=[f"{i:064x}" for i in range(len(images))],
        reference_labels=labels,
        reference_features=features,
    )
    return head, images, features


def test_it_attributes_images_in_one_pass_over_the_heads_blocks(
    backbone: Backbone, trained: tuple[HeadArtifact, list[Image.Image], np.ndarray]
) -> None:
    head, images, features = trained
    attributor = Attributor(backbone, head, nearest_k=3)
    assert attributor.blocks == BLOCKS
    from_images = attributor.attribute(images[::4])
    from_features = attributor.attribute_features(features[::4])
    for a, b in zip(from_images, from_features, strict=True):
        assert a.label == b.label and a.decision == b.decision
        assert a.score == pytest.approx(b.score, abs=1e-5)

    assert attributor.attribute([]) == []
    results = attributor.attribute_features(features)
    assert [r.label for r in results] == list(head.estimator.predict(features))
    for result in results:
        assert isinstance(result, Attribution)
        assert result.backbone == "ViT-S-16/random-seed0" and result.pretrained is False
        assert result.threshold == head.threshold
        assert list(result.probabilities) == head.classes
        assert sum(result.probabilities.values()) == pytest.approx(1.0)
        assert result.score == pytest.approx(max(result.probabilities.values()))  # msp
        expected = "unknown_generator" if result.score < head.threshold else None
        expected = expected or ("real" if result.label == "real" else "known_generator")
        assert result.decision == expected
        json.dumps(result.to_dict())


def test_it_shows_the_nearest_references_most_similar_first(
    backbone: Backbone, trained: tuple[HeadArtifact, list[Image.Image], np.ndarray]
) -> None:
    head, _, features = trained
    results = Attributor(backbone, head, nearest_k=4).attribute_features(features)
    for index, result in enumerate(results):
        similarities = [n["similarity"] for n in result.nearest]
        assert len(similarities) == 4 and similarities == sorted(similarities, reverse=True)
        # A reference image is its own nearest reference (float16 storage: nearly 1).
        assert result.nearest[0]["sha256"] == head.reference_ids[index]
        assert result.nearest[0]["similarity"] == pytest.approx(1.0, abs=1e-3)
        assert result.nearest[0]["label"] == head.reference_labels[index]
    assert Attributor(backbone, head, nearest_k=0).attribute_features(features[:1])[0].nearest == []


def test_it_decides_by_the_threshold_and_the_real_label(
    backbone: Backbone, trained: tuple[HeadArtifact, list[Image.Image], np.ndarray]
) -> None:
    head, _, features = trained
    accept_all = Attributor(backbone, dataclasses.replace(head, threshold=-np.inf))
    decisions = {(r.label, r.decision) for r in accept_all.attribute_features(features)}
    assert decisions == {("real", "real"), ("noise", "known_generator"), ("stripes", "known_generator")}
    reject_all = Attributor(backbone, dataclasses.replace(head, threshold=np.inf))
    assert {r.decision for r in reject_all.attribute_features(features)} == {"unknown_generator"}
    noise_is_real = Attributor(backbone, dataclasses.replace(head, threshold=-np.inf), real_label="noise")
    for result in noise_is_real.attribute_features(features):
        assert result.decision == ("real" if result.label == "noise" else "known_generator")


def test_it_scores_with_the_heads_knn_method(
    backbone: Backbone, trained: tuple[HeadArtifact, list[Image.Image], np.ndarray]
) -> None:
    head, _, features = trained
    knn = Attributor(backbone, dataclasses.replace(head, score_method="knn"), nearest_k=2)
    for result in knn.attribute_features(features[:3] + 0.1):
        assert result.score == pytest.approx(result.nearest[0]["similarity"])


def test_it_refuses_a_head_of_another_backbone(
    backbone: Backbone, trained: tuple[HeadArtifact, list[Image.Image], np.ndarray]
) -> None:
    head, _, _ = trained
    other = dataclasses.replace(head, backbone_identity="ViT-B-16/laion2b_s34b_b88k")
    with pytest.raises(HeadMismatchError, match="ViT-B-16/laion2b_s34b_b88k"):
        Attributor(backbone, other)


def _imports(module: str, seen: set[str] | None = None) -> set[str]:
    """Every module `module` imports at run time, following `attribution` modules transitively
    (imports under `if TYPE_CHECKING:` do not run, so they do not count)."""
    seen = set() if seen is None else seen
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for node in ast.walk(block)
    }
    for node in ast.walk(tree):
        if id(node) in skipped or not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        if isinstance(node, ast.ImportFrom) and node.module == "attribution":
            names = [f"attribution.{alias.name}" for alias in node.names]
        for name in names:
            if name not in seen:
                seen.add(name)
                if name.startswith("attribution.") and (ROOT / (name.replace(".", "/") + ".py")).exists():
                    _imports(name, seen)
    return seen


def test_it_imports_no_training_code() -> None:
    assert "attribution.training" not in _imports("attribution.predict")
    # Heads load and score without torch.
    for module in ("attribution.artifact", "attribution.heads", "attribution.openset", "attribution.metrics"):
        imported = _imports(module)
        assert "torch" not in imported and "attribution.training" not in imported, module
    assert "torch" in _imports("attribution.predict")  # the check sees through to the backbone
