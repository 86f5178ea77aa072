"""Head files: one pickle-free .npz that round-trips exactly and refuses another backbone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attribution.artifact import FORMAT_VERSION, HeadArtifact, HeadMismatchError, load_head, save_head
from attribution.heads import KNNHead, LinearProbe

IDENTITY = "ViT-S-16/random-seed0"


def _artifact(estimator: LinearProbe | KNNHead, seed: int = 0) -> tuple[HeadArtifact, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(loc, 1.0, size=(12, 6)) for loc in (-1.0, 0.0, 1.0)])
    labels = ["real"] * 12 + ["sd14"] * 12 + ["midjourney"] * 12
    estimator.fit(X, labels)
    artifact = HeadArtifact(
        estimator=estimator,
        classes=list(estimator.classes_),
        backbone_identity=IDENTITY,
        model_name="ViT-S-16",
        pretrained_tag=None,
        pretrained=False,
        blocks=[8, 6],
        score_method="msp",
        threshold=0.42,
        hyperparameters={"head": "test"},
        metrics={"accuracy": 0.9, "per_class_recall": {"real": 1.0}, "auroc": None},
        reference_ids=[f"{i:064x}" for i in range(len(X))],
        reference_labels=labels,
        reference_features=X * 3.0,  # stored L2-normalised whatever the scale
    )
    return artifact, rng.normal(size=(10, 6))


@pytest.mark.parametrize("estimator", [LinearProbe(c_grid=[0.01, 1.0, 100.0]), KNNHead(k_grid=[1, 3, 5])])
def test_it_round_trips_a_head(tmp_path: Path, estimator: LinearProbe | KNNHead) -> None:
    artifact, queries = _artifact(estimator)
    path = tmp_path / "head-v1"  # no suffix: the file is written exactly there
    save_head(artifact, path)
    assert path.exists() and list(tmp_path.iterdir()) == [path]

    loaded = load_head(path, backbone_identity=IDENTITY)
    assert type(loaded.estimator) is type(estimator)
    np.testing.assert_array_equal(loaded.estimator.predict_proba(queries), estimator.predict_proba(queries))
    np.testing.assert_array_equal(loaded.estimator.predict(queries), estimator.predict(queries))
    assert loaded.estimator.get_params().keys() == estimator.get_params().keys()
    for name in ("classes", "backbone_identity", "model_name", "pretrained_tag", "pretrained", "blocks"):
        assert getattr(loaded, name) == getattr(artifact, name), name
    for name in (
        "score_method",
        "threshold",
        "hyperparameters",
        "metrics",
        "reference_ids",
        "reference_labels",
    ):
        assert getattr(loaded, name) == getattr(artifact, name), name
    assert loaded.created_at == artifact.created_at and loaded.format_version == FORMAT_VERSION == 2
    assert loaded.reference_features.dtype == np.float16
    np.testing.assert_array_equal(loaded.reference_features, artifact.reference_features)
    np.testing.assert_allclose(
        np.linalg.norm(loaded.reference_features.astype(float), axis=1), 1.0, atol=1e-3
    )
    assert loaded.head_kind == ("linear" if isinstance(estimator, LinearProbe) else "knn")


def test_it_stores_no_pickled_object(tmp_path: Path) -> None:
    artifact, _ = _artifact(KNNHead())
    save_head(artifact, tmp_path / "head.npz")
    with np.load(tmp_path / "head.npz", allow_pickle=False) as data:
        dtypes = {name: data[name].dtype for name in data.files}  # raises if anything needed pickle
    assert not any(dtype.hasobject for dtype in dtypes.values())
    assert {"metadata", "reference_features", "knn_X", "knn_y"} <= dtypes.keys()


def test_it_refuses_a_head_of_another_backbone(tmp_path: Path) -> None:
    artifact, _ = _artifact(LinearProbe(c_grid=[1.0]))
    save_head(artifact, tmp_path / "head.npz")
    with pytest.raises(HeadMismatchError) as error:
        load_head(tmp_path / "head.npz", backbone_identity="ViT-B-16/laion2b_s34b_b88k")
    assert IDENTITY in str(error.value) and "ViT-B-16/laion2b_s34b_b88k" in str(error.value)
    assert isinstance(error.value, ValueError)
    assert load_head(tmp_path / "head.npz").backbone_identity == IDENTITY  # no backbone given: no check


def test_it_refuses_an_unknown_format_version(tmp_path: Path) -> None:
    artifact, _ = _artifact(LinearProbe(c_grid=[1.0]))
    save_head(artifact, tmp_path / "head.npz")
    with np.load(tmp_path / "head.npz", allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    metadata = json.loads(str(arrays["metadata"]))
    metadata["format_version"] = 99
    arrays["metadata"] = np.array(json.dumps(metadata))
    np.savez_compressed(tmp_path / "future.npz", **arrays)
    with pytest.raises(ValueError, match="format version 99"):
        load_head(tmp_path / "future.npz")


def test_it_refuses_inconsistent_metadata() -> None:
    artifact, _ = _artifact(LinearProbe(c_grid=[1.0]))
    with pytest.raises(ValueError, match="reference"):
        HeadArtifact(**{**vars(artifact), "reference_ids": artifact.reference_ids[:-1]})
    with pytest.raises(ValueError, match="classes"):
        HeadArtifact(**{**vars(artifact), "classes": ["real", "sd14", "dalle"]})
    with pytest.raises(ValueError, match="score method"):
        HeadArtifact(**{**vars(artifact), "score_method": "odin"})
    no_references = {"reference_ids": [], "reference_labels": [], "reference_features": np.zeros((0, 6))}
    with pytest.raises(ValueError, match="reference features"):
        HeadArtifact(**{**vars(artifact), **no_references, "score_method": "knn"})
    assert HeadArtifact(**{**vars(artifact), **no_references}).reference_features.shape == (0, 6)
