"""Robustness in `evaluate`: perturbed test images scored by the best block's head, robust training's
perturbed copies of the training rows, and a second run that computes no feature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attribution.backbone import load_backbone
from attribution.config import OFFLINE_BACKBONE
from attribution.evaluate import evaluate
from attribution.features import FeatureCache
from attribution.perturb import Perturbation
from attribution.robustness import format_robustness, perturbed_features, plot_robustness, with_perturbed_copies
from attribution.synth import DEFAULT_KNOWN, DEFAULT_UNKNOWN, make_benchmark


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("robust")
    make_benchmark(root, seed=0, per_class=4, size=32)
    return root


def run(benchmark: Path, cache: Path, **kwargs: object) -> dict:
    return evaluate(
        benchmark,
        known=DEFAULT_KNOWN,
        unknown=DEFAULT_UNKNOWN[:2],
        blocks=[0],  # the forward pass stops at block 0: cheap
        backbone_config=OFFLINE_BACKBONE,
        cache_dir=cache,
        progress=False,
        **kwargs,  # type: ignore[arg-type]
    )


def test_it_reports_each_perturbation_and_level_beside_the_clean_figures(benchmark: Path, tmp_path: Path) -> None:
    report = run(benchmark, tmp_path / "cache", perturb=["jpeg:90,30", "noise:0.2"])
    assert list(report["robustness"]) == ["jpeg", "noise"] and list(report["robustness"]["jpeg"]) == ["90", "30"]
    for levels in report["robustness"].values():
        for figures in levels.values():
            assert all(0.0 <= figures[key] <= 1.0 for key in ("accuracy", "auroc", "oscr"))
    assert report["robustness_block"] == 0
    assert report["robustness_clean"] == {k: report["blocks"]["0"][k] for k in ("accuracy", "auroc", "oscr")}
    assert report["split"] == {"known": DEFAULT_KNOWN, "unknown": DEFAULT_UNKNOWN[:2]}
    assert report["protocol"]["name"] == "imagefolder"
    assert "clean" in format_robustness(report)
    plot_robustness(report, tmp_path / "robustness.png")
    assert (tmp_path / "robustness.png").stat().st_size > 0
    cached = sorted(p.name for p in (tmp_path / "cache").rglob("*.npy"))
    again = run(benchmark, tmp_path / "cache", perturb=["jpeg:90,30", "noise:0.2"])
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*.npy")) == cached  # nothing new computed
    assert again["robustness"] == report["robustness"]


def test_robust_training_adds_one_copy_of_each_training_image_per_perturbation(benchmark: Path, tmp_path: Path) -> None:
    plain = run(benchmark, tmp_path / "cache")
    robust = run(benchmark, tmp_path / "cache", robust_train=["jpeg:50", "blur:1"])
    for name, count in plain["settings"]["counts"]["train"].items():
        assert robust["settings"]["counts"]["train"][name] == 3 * count
    assert robust["settings"]["counts"]["known_test"] == plain["settings"]["counts"]["known_test"]
    assert robust["protocol"]["robust_training"] == ["jpeg:50", "blur:1"]


def test_the_copies_are_the_perturbed_training_rows(benchmark: Path, tmp_path: Path) -> None:
    backbone = load_backbone(OFFLINE_BACKBONE)
    paths = sorted((benchmark / "real").glob("*.png")) + sorted((benchmark / "tconv-s1").glob("*.png"))
    features = {0: np.arange(8 * backbone.width, dtype=np.float32).reshape(8, -1)}
    labels = np.asarray(["real"] * 4 + ["tconv-s1"] * 4)
    train = {"real": np.asarray([2, 0]), "tconv-s1": np.asarray([5])}
    jpeg = Perturbation("jpeg", 40)
    out, out_labels, out_train = with_perturbed_copies(backbone, features, labels, train, paths, [jpeg])
    assert out[0].shape == (11, backbone.width) and list(out_labels[8:]) == ["real", "real", "tconv-s1"]
    assert {name: rows.tolist() for name, rows in out_train.items()} == {"real": [2, 0, 8, 9], "tconv-s1": [5, 10]}
    direct = perturbed_features(backbone, [paths[2], paths[0], paths[5]], jpeg, [0], cache=FeatureCache(tmp_path))
    np.testing.assert_allclose(out[0][8:], direct[0], rtol=1e-5, atol=1e-5)
    assert not np.allclose(direct[0][0], perturbed_features(backbone, [paths[2]], Perturbation("blur", 2), [0])[0][0])
