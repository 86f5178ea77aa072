"""The paper's protocol on a small synthetic benchmark, with the offline random-weights backbone."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from attribution.config import OFFLINE_BACKBONE
from attribution.evaluate import UnreadableImagesWarning, evaluate, plot_blocks
from attribution.synth import DEFAULT_KNOWN, make_benchmark

UNKNOWN = ["tconv-s2", "pixelshuffle-s2"]
PER_CLASS = 14
C_GRID = 10 ** np.linspace(-2, 4, 7)  # coarser than the paper's 45 values: a faster test


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    make_benchmark(root, seed=0, per_class=PER_CLASS, size=64)
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def report(benchmark: Path, cache_dir: Path) -> dict[str, Any]:
    return evaluate(
        benchmark,
        known=DEFAULT_KNOWN,
        unknown=UNKNOWN,
        blocks=[8, 2],
        c_grid=C_GRID,
        cache_dir=cache_dir,
        progress=False,
    )


def test_every_block_beats_chance_with_valid_open_set_scores(report: dict[str, Any]) -> None:
    assert sorted(report["blocks"]) == ["2", "8"]
    for scores in report["blocks"].values():
        assert scores["accuracy"] > 1 / len(DEFAULT_KNOWN)  # chance
        assert 0.0 <= scores["macro_f1"] <= 1.0
        assert 0.0 <= scores["auroc"] <= 1.0
        assert 0.0 <= scores["oscr"] <= scores["accuracy"]  # OSCR never exceeds the closed-set accuracy
        assert scores["hyperparameters"]["C"] > 0
        # The contract of issue #13: how the head was made and what its threshold does on the test split.
        assert scores["select_by"] == "logo" and scores["C"] == scores["hyperparameters"]["C"]
        assert scores["score_method"] in scores["training"]["score_comparison"]
        assert np.isfinite(scores["threshold"])
        assert 0.0 <= scores["known_acceptance_at_threshold"] <= 1.0
        assert 0.0 <= scores["unknown_rejection_at_threshold"] <= 1.0
    best = report["best_block"]
    assert best in (2, 8)
    assert report["blocks"][str(best)]["oscr"] == max(s["oscr"] for s in report["blocks"].values())


def test_the_report_says_how_it_was_made(report: dict[str, Any]) -> None:
    settings = report["settings"]
    assert settings["known"] == DEFAULT_KNOWN and settings["unknown"] == UNKNOWN
    assert settings["backbone"] == "ViT-S-16/random-seed0" and settings["pretrained"] is False
    assert settings["blocks"] == [2, 8] and settings["shots"] is None
    assert (settings["head"], settings["select_by"], settings["score_method"]) == ("linear", "logo", "auto")
    n_test = round(0.3 * PER_CLASS)
    assert settings["counts"] == {
        "train": dict.fromkeys(DEFAULT_KNOWN, PER_CLASS - n_test),
        "known_test": n_test * len(DEFAULT_KNOWN),
        "unknown_test": PER_CLASS * len(UNKNOWN),
    }
    assert settings["skipped"] == []


def test_the_plot_is_a_png(report: dict[str, Any], tmp_path: Path) -> None:
    plot_blocks(report, tmp_path / "blocks.png")
    with Image.open(tmp_path / "blocks.png") as image:
        assert image.format == "PNG" and image.width > 300


def test_unreadable_files_are_skipped_and_shots_reuse_the_features(
    benchmark: Path, cache_dir: Path, tmp_path: Path
) -> None:
    # Copies of the benchmark's files hit the feature cache: only the kNN heads are fitted here.
    data = tmp_path / "data"
    for name in [*DEFAULT_KNOWN, "tconv-s2"]:
        shutil.copytree(benchmark / name, data / name)
    (data / "real" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")

    with pytest.warns(UnreadableImagesWarning, match="broken.png"):
        result = evaluate(
            data,
            known=DEFAULT_KNOWN,
            unknown=["tconv-s2"],
            blocks=[2],
            head="knn",
            shots=[3, 6],
            cache_dir=cache_dir,
            progress=False,
        )

    settings = result["settings"]
    assert [Path(item["path"]).name for item in settings["skipped"]] == ["broken.png"]
    assert settings["counts"]["train"] == dict.fromkeys(DEFAULT_KNOWN, PER_CLASS - round(0.3 * PER_CLASS))
    assert (settings["head"], settings["select_by"], settings["shots"]) == ("knn", None, [3, 6])
    assert sorted(result["shots"]) == ["3", "6"]
    for n, sub_report in result["shots"].items():
        assert sub_report["train_per_class"] == int(n) and sub_report["best_block"] == 2
    for scores in [result["blocks"]["2"], *(sub["blocks"]["2"] for sub in result["shots"].values())]:
        assert 0.0 <= scores["oscr"] <= scores["accuracy"] <= 1.0 and 0.0 <= scores["auroc"] <= 1.0
        assert 1 <= scores["hyperparameters"]["k"] <= 20


def test_an_unknown_class_name_lists_the_available_ones(benchmark: Path) -> None:
    with pytest.raises(ValueError, match=r"'dalle'.*available classes: bilinear-s1, bilinear-s2"):
        evaluate(benchmark, known=["real", "dalle"], unknown=UNKNOWN, blocks=[2], progress=False)


def test_an_empty_class_folder_is_an_error(benchmark: Path, tmp_path: Path) -> None:
    shutil.copytree(benchmark / "real", tmp_path / "real")
    (tmp_path / "midjourney").mkdir()
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "a.png").write_bytes((benchmark / "tconv-s1" / "0000.png").read_bytes())

    with pytest.raises(ValueError, match="class folder 'midjourney' is empty"):
        evaluate(tmp_path, known=["real", "midjourney"], unknown=["sd"], blocks=[2], progress=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"known": ["real"], "unknown": UNKNOWN}, "at least two known classes"),
        ({"known": ["real", "tconv-s2"], "unknown": UNKNOWN}, "both known and unknown: tconv-s2"),
        ({"known": DEFAULT_KNOWN, "unknown": UNKNOWN, "shots": 15}, "too few to train on 15"),
        ({"known": DEFAULT_KNOWN, "unknown": UNKNOWN, "head": "svm"}, "head must be one of"),
        ({"known": DEFAULT_KNOWN, "unknown": UNKNOWN, "blocks": [12]}, r"blocks must be in 0\.\.11"),
    ],
)
def test_bad_requests_are_value_errors(benchmark: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate(benchmark, **{"blocks": [2], "backbone_config": OFFLINE_BACKBONE, "progress": False, **kwargs})
