"""The GenImage layout and the paper's five splits: the data file, finding folders, the split's files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attribution.genimage import (
    SPLITS_FILE,
    class_files,
    class_folders,
    generator_folders,
    genimage_source,
    genimage_split,
    genimage_splits,
    mean_reports,
    split_files,
    write_genimage_tree,
)

GENERATORS = [
    "ADM",
    "BigGAN",
    "Midjourney",
    "VQDM",
    "glide",
    "stable_diffusion_v_1_4",
    "stable_diffusion_v_1_5",
    "wukong",
]


def test_the_five_splits_are_the_authors_and_each_uses_every_generator_once() -> None:
    splits = genimage_splits()
    assert sorted(splits) == [1, 2, 3, 4, 5]
    assert splits[1].known == ("real", "wukong", "Midjourney", "VQDM", "stable_diffusion_v_1_4")
    assert splits[1].unknown == ("stable_diffusion_v_1_5", "BigGAN", "ADM", "glide")
    for split in splits.values():
        assert split.known[0] == "real" and len(split.known) == 5 and len(split.unknown) == 4
        assert sorted([*split.known[1:], *split.unknown]) == sorted(GENERATORS)
    assert "ciodar/UniversalAttribution" in genimage_source() and "2408.09153" in genimage_source()
    assert json.loads(SPLITS_FILE.read_text())["samples_per_class"] == 4000
    for bad in (0, 6, "x"):
        with pytest.raises(ValueError, match="split must be one of"):
            genimage_split(bad)


def png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Every GenImage generator, half nested as in the official download: 3 train and 2 val images of each
    kind."""
    root = tmp_path / "GenImage"
    for index, name in enumerate(GENERATORS):
        holder = root / name / f"imagenet_{name.lower()}" if index % 2 else root / name
        for phase, n in (("train", 3), ("val", 2)):
            for kind in ("ai", "nature"):
                for i in range(n):
                    png(holder / phase / kind / f"{name}-{kind}-{i}.png", index * 10 + i)
    (root / "README.txt").write_text("not a generator")
    return root


def test_it_finds_generators_flat_or_nested_and_maps_nature_to_real(tree: Path) -> None:
    found = generator_folders(tree)
    assert sorted(found) == sorted(GENERATORS)
    assert found["BigGAN"].name == "imagenet_biggan" and found["ADM"] == tree / "ADM"
    folders = class_folders(tree, layout="genimage", phase="train")
    assert list(folders)[0] == "real" and len(folders["real"]) == 8
    real = list(class_files(folders["real"]))
    assert len(real) == 24 and {p.name.split("-")[0] for p in real[:8]} == set(GENERATORS)  # dealt evenly
    assert len(list(class_files(class_folders(tree, layout="genimage", phase="all")["glide"]))) == 5
    with pytest.raises(ValueError, match="not in the GenImage layout"):
        class_folders(tree / "ADM" / "train", layout="genimage")


def test_a_split_trains_on_train_and_tests_on_val(tree: Path) -> None:
    files = split_files(tree, genimage_split(1), per_class=2)
    assert list(files.train) == list(genimage_split(1).known) == list(files.test)
    assert list(files.unknown) == list(genimage_split(1).unknown)
    assert files.counts()["train"] == {name: 2 for name in genimage_split(1).known}
    assert all("/train/" in str(p) for paths in files.train.values() for p in paths)
    assert all("/val/" in str(p) for part in (files.test, files.unknown) for paths in part.values() for p in paths)
    assert all("/ai/" in str(p) for p in files.unknown["BigGAN"])
    # real comes from the known generators' folders only
    known_generators = set(genimage_split(1).known[1:])
    assert {p.name.split("-")[0] for p in files.test["real"]} == known_generators
    assert files.counts()["test"]["real"] == 8 and files.counts()["unknown"]["ADM"] == 2
    assert split_files(tree, genimage_split(1), per_class=2).train == files.train  # seeded


def test_folders_spelled_as_in_the_official_readme_are_found(tree: Path) -> None:
    (tree / "stable_diffusion_v_1_4").rename(tree / "Stable Diffusion V1.4")
    (tree / "glide").rename(tree / "GLIDE")
    files = split_files(tree, genimage_split(4), per_class=2)
    assert len(files.train["stable_diffusion_v_1_4"]) == 2 and len(files.train["glide"]) == 2


def test_a_missing_generator_is_named(tree: Path) -> None:
    import shutil

    shutil.rmtree(tree / "glide")
    with pytest.raises(ValueError, match="no folder for glide"):
        split_files(tree, genimage_split(1))


def test_it_writes_a_genimage_tree_from_an_imagefolder(tmp_path: Path) -> None:
    source = tmp_path / "folder"
    for name in ("real", "a", "b"):
        for i in range(5):
            png(source / name / f"{i}.png", i)
    counts = write_genimage_tree(source, tmp_path / "gi", {"a": "wukong", "b": "ADM"})
    assert counts == {"wukong": 5, "ADM": 5, "real": 5}
    assert len(list((tmp_path / "gi" / "wukong" / "train" / "ai").iterdir())) == 3
    assert sorted(generator_folders(tmp_path / "gi")) == ["ADM", "wukong"]


def test_the_mean_over_splits_is_the_papers_table() -> None:
    def report(number: int, oscr: float) -> dict:
        entry = {"accuracy": 0.9, "auroc": 0.8, "oscr": oscr, "C": 10.0**number, "score_method": "msp"}
        return {
            "blocks": {"7": entry, "8": dict(entry, oscr=oscr - 0.1)},
            "best_block": 7,
            "split": genimage_split(number).as_dict(),
            "robustness": {"jpeg": {"75": {"accuracy": 0.5, "auroc": 0.6, "oscr": oscr / 2}}},
            "settings": {"backbone": "x"},
        }

    mean = mean_reports({1: report(1, 0.6), 2: report(2, 0.8)})
    assert mean["blocks"]["7"]["oscr"] == pytest.approx(0.7)
    assert mean["blocks"]["7"]["oscr_per_split"] == [0.6, 0.8]
    assert mean["blocks"]["7"]["C"] == pytest.approx(10**1.5)
    assert mean["best_block"] == 7 and mean["split"]["number"] == "all"
    assert [s["number"] for s in mean["split"]["splits"]] == [1, 2]
    assert mean["robustness"]["jpeg"]["75"]["oscr"] == pytest.approx(0.35)
    assert set(mean["splits"]) == {"1", "2"}


def test_the_cli_says_what_a_genimage_or_imagefolder_run_lacks(tree: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from attribution.__main__ import main

    out = ["--out", str(tmp_path / "r.json"), "--no-progress"]
    assert main(["evaluate", str(tree), "--layout", "genimage", *out]) == 2
    assert "needs --split 1..5 or all" in capsys.readouterr().err
    assert main(["evaluate", str(tree), *out]) == 2
    assert "--known and --unknown are needed" in capsys.readouterr().err
    assert main(["evaluate", str(tree), "--layout", "genimage", "--split", "7", *out]) == 2
    assert "split must be one of 1, 2, 3, 4, 5 or all" in capsys.readouterr().err
