"""The paper's evaluation protocol on an ImageFolder, block by block.

Each known class is split by seed into a training part (70 %, from which the head holds out
its own validation split to choose C or k) and a test part (30 %); the unknown classes are
test only. Features of every requested block come from one forward pass per batch, then for
each block a head is fitted and scored: closed-set accuracy and macro F1 on the known test
images, AUROC of the maximum softmax probability (known test against unknown), and OSCR.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from tqdm import tqdm

from attribution import metrics
from attribution.backbone import Backbone, load_backbone
from attribution.config import OFFLINE_BACKBONE, BackboneConfig
from attribution.features import FeatureCache, extract_features
from attribution.heads import SELECT_BY, KNNHead, LinearProbe
from attribution.images import ImageRejected, open_image, sha256_of

TEST_FRACTION = 0.3
VAL_FRACTION = 0.2  # of each known class; the head holds it out of the training part to choose C
HEADS = ("linear", "knn")
BEST_BY = "oscr"
METRIC_NAMES = ("accuracy", "auroc", "oscr")


class UnreadableImagesWarning(UserWarning):
    """Some files of the data set could not be opened as images and were left out."""


@dataclass(frozen=True)
class _Split:
    """Indices into the extracted feature rows."""

    train: dict[str, np.ndarray]  # known class -> rows, in the seeded order (shots take a prefix)
    known_test: np.ndarray
    unknown_test: np.ndarray


def list_classes(data_dir: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """The class folders of an ImageFolder and their files (sorted by name; hidden files left out)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"data directory {root} does not exist")
    return {
        folder.name: sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        for folder in sorted(root.iterdir())
        if folder.is_dir() and not folder.name.startswith(".")
    }


def evaluate(
    data_dir: str | os.PathLike[str],
    *,
    known: Sequence[str],
    unknown: Sequence[str],
    blocks: Sequence[int],
    head: str = "linear",
    select_by: str = "accuracy",
    c_grid: Sequence[float] | np.ndarray | None = None,
    shots: int | Sequence[int] | None = None,
    backbone_config: BackboneConfig = OFFLINE_BACKBONE,
    device: str = "cpu",
    batch_size: int = 32,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate open-set attribution with the CLS features of each block in `blocks`.

    `shots=N` trains on N images per known class; a list of N also reports each of them under
    `"shots"` (reusing the features) while `"blocks"` uses the whole training part. Returns
    `{"blocks": {"8": {"accuracy", "auroc", "oscr", "macro_f1", "hyperparameters"}}, "best_block",
    "settings"}`, metrics as fractions. Unreadable files are skipped with an `UnreadableImagesWarning`.
    The linear probe's C is chosen by `select_by` on its validation split; the default, accuracy, is
    steadier than the misclassification-AUROC proxy, which can pick an underfitted C on small sets;
    `c_grid=None` is the paper's sweep.
    """
    template = _head(head, select_by, c_grid, seed)
    shot_list = _shot_list(shots)
    files = _class_files(data_dir, list(known), list(unknown))
    for name in known:  # fail before the forward passes; checked again once unreadable files are out
        _check_class_size(name, len(files[name]), shot_list)
    backbone = load_backbone(backbone_config, device=device)
    take = backbone.validate_blocks(blocks)
    paths, features, skipped = _extract(
        backbone, [p for ps in files.values() for p in ps], take, cache_dir, batch_size, progress
    )
    labels, split = _split(files, paths, list(known), list(unknown), seed, shot_list)

    single = len(shot_list) == 1 and isinstance(shots, int)
    main_shots = shot_list[0] if single else None
    runs = [main_shots] + ([] if single or not shot_list else shot_list)
    results: dict[int | None, dict[str, dict[str, Any]]] = {n: {} for n in runs}
    with tqdm(total=len(runs) * len(take), desc="fitting heads", unit="head", disable=not progress) as bar:
        for n in runs:
            train = np.concatenate([rows if n is None else rows[:n] for rows in split.train.values()])
            for block in take:
                results[n][str(block)] = _score_block(template, features[block], labels, train, split)
                bar.update()

    report: dict[str, Any] = {"blocks": results[main_shots], "best_block": best_block(results[main_shots])}
    if shot_list and not single:
        report["shots"] = {
            str(n): {"blocks": results[n], "best_block": best_block(results[n]), "train_per_class": n}
            for n in shot_list
        }
    report["settings"] = {
        "data_dir": str(Path(data_dir)),
        "known": list(known),
        "unknown": list(unknown),
        "blocks": list(take),
        "backbone": backbone.identity,
        "backbone_config": asdict(backbone_config),
        "pretrained": backbone.pretrained,
        "head": head,
        "select_by": select_by if head == "linear" else None,
        "shots": shots if shots is None or isinstance(shots, int) else list(shot_list),
        "seed": seed,
        "split": {"train": round(1 - TEST_FRACTION - VAL_FRACTION, 6), "val": VAL_FRACTION, "test": TEST_FRACTION},
        "selection": (
            f"C by validation {select_by} (c_grid {'paper' if c_grid is None else list(c_grid)}), "
            "then refit on train and val"
            if head == "linear"
            else "k by leave-one-out accuracy on train and val"
        ),
        "best_by": BEST_BY,
        "counts": {
            "train": {  # train and val together: what the head is fitted on
                name: len(rows) if main_shots is None else main_shots for name, rows in split.train.items()
            },
            "known_test": int(split.known_test.size),
            "unknown_test": int(split.unknown_test.size),
        },
        "skipped": skipped,
    }
    return report


def best_block(blocks: dict[str, dict[str, Any]]) -> int:
    """The block with the best OSCR (ties: accuracy, then the earlier block)."""
    return int(max(blocks, key=lambda b: (blocks[b][BEST_BY], blocks[b]["accuracy"], -int(b))))


def plot_blocks(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """PNG of accuracy, AUROC and OSCR (percent) against block, the best block marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = sorted(report["blocks"], key=int)
    x = [int(b) for b in blocks]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for name, label, marker in zip(METRIC_NAMES, ("accuracy", "AUROC", "OSCR"), "os^", strict=True):
        ax.plot(x, [100 * report["blocks"][b][name] for b in blocks], marker=marker, label=label)
    ax.axvline(report["best_block"], color="grey", linestyle=":", label=f"best block ({report['best_block']})")
    settings = report["settings"]
    weights = "pretrained" if settings["pretrained"] else "random weights"
    ax.set_title(f"{settings['backbone']} ({weights}), {settings['head']} head", fontsize=10)
    ax.set_xlabel("block (0-based)")
    ax.set_ylabel("%")
    ax.set_xticks(x)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _shot_list(shots: int | Sequence[int] | None) -> list[int]:
    values = [] if shots is None else [shots] if isinstance(shots, int) else sorted(set(shots))
    if any(n < 1 for n in values):
        raise ValueError(f"shots must be positive, got {values}")
    return values


def _class_files(data_dir: str | os.PathLike[str], known: list[str], unknown: list[str]) -> dict[str, list[Path]]:
    """The files of each requested class, known classes first; ValueError for a bad request."""
    folders = list_classes(data_dir)
    if len(known) < 2 or not unknown:
        raise ValueError("the protocol needs at least two known classes and one unknown class")
    if overlap := sorted(set(known) & set(unknown)):
        raise ValueError(f"classes both known and unknown: {', '.join(overlap)}")
    if missing := [name for name in [*known, *unknown] if name not in folders]:
        raise ValueError(f"unknown class {missing[0]!r}; available classes: {', '.join(folders) or 'none'}")
    if empty := [name for name in [*known, *unknown] if not folders[name]]:
        raise ValueError(f"class folder {empty[0]!r} is empty")
    return {name: folders[name] for name in [*known, *unknown]}


def _split(
    files: dict[str, list[Path]],
    paths: list[Path],
    known: list[str],
    unknown: list[str],
    seed: int,
    shots: list[int],
) -> tuple[np.ndarray, _Split]:
    """Labels `[N]` of the extracted `paths` and the seeded split of their rows."""
    label_of = {path: name for name, class_paths in files.items() for path in class_paths}
    labels = np.asarray([label_of[path] for path in paths])
    rows = {name: np.flatnonzero(labels == name) for name in files}
    if empty := [name for name, r in rows.items() if r.size == 0]:
        raise ValueError(f"class folder {empty[0]!r} has no readable image")
    rng = np.random.default_rng(seed)
    train: dict[str, np.ndarray] = {}
    known_test = []
    for name in known:
        order = rng.permutation(rows[name])
        n_test = _check_class_size(name, len(order), shots)
        known_test.append(order[:n_test])
        train[name] = order[n_test:]
    return labels, _Split(train, np.concatenate(known_test), np.concatenate([rows[name] for name in unknown]))


def _check_class_size(name: str, n_images: int, shots: list[int]) -> int:
    """The number of test images of a known class of `n_images`; ValueError when too few are left to train."""
    n_test = max(1, round(TEST_FRACTION * n_images))
    if n_images - n_test < max([1, *shots]):
        raise ValueError(
            f"class {name!r} has {n_images} images: too few to train on {max([1, *shots])} and test on {n_test}"
        )
    return n_test


def _extract(
    backbone: Backbone,
    paths: list[Path],
    blocks: tuple[int, ...],
    cache_dir: str | os.PathLike[str] | None,
    batch_size: int,
    progress: bool,
) -> tuple[list[Path], dict[int, np.ndarray], list[dict[str, str]]]:
    """Features {block: [N, width]} of the readable files (one forward pass per batch for all
    blocks), those files, and the skipped ones with the reason (also an `UnreadableImagesWarning`)."""
    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    readable: list[Path] = []
    skipped: list[dict[str, str]] = []
    chunks: list[dict[int, np.ndarray]] = []
    with tqdm(total=len(paths), desc="extracting features", unit="img", disable=not progress) as bar:
        for start in range(0, len(paths), batch_size):
            batch = paths[start : start + batch_size]
            try:
                chunks.append(_extract_batch(backbone, batch, blocks, cache))
            except ImageRejected:  # rare: find the culprits, then extract the rest
                good = []
                for path in batch:
                    try:
                        open_image(path)
                        good.append(path)
                    except ImageRejected as error:
                        skipped.append({"path": str(path), "reason": str(error)})
                batch = good
                chunks.append(_extract_batch(backbone, batch, blocks, cache))
            readable += batch
            bar.update(len(paths[start : start + batch_size]))
    if skipped:
        listing = "; ".join(f"{item['path']}: {item['reason']}" for item in skipped)
        warnings.warn(f"skipped {len(skipped)} unreadable file(s): {listing}", UnreadableImagesWarning, stacklevel=3)
    features = {block: np.concatenate([chunk[block] for chunk in chunks]) for block in blocks}
    return readable, features, skipped


def _extract_batch(
    backbone: Backbone, paths: list[Path], blocks: tuple[int, ...], cache: FeatureCache | None
) -> dict[int, np.ndarray]:
    sha256s = [sha256_of(path) for path in paths] if cache is not None else None
    return extract_features(backbone, paths, blocks, cache=cache, sha256s=sha256s, batch_size=max(1, len(paths)))


def _head(head: str, select_by: str, c_grid: Sequence[float] | np.ndarray | None, seed: int) -> LinearProbe | KNNHead:
    """The unfitted head that each block gets a clone of."""
    if select_by not in SELECT_BY:
        raise ValueError(f"select_by must be one of {', '.join(SELECT_BY)}, got {select_by!r}")
    if head == "linear":
        # The head's validation split is VAL_FRACTION of the whole class: this share of the training part.
        val_fraction = VAL_FRACTION / (1 - TEST_FRACTION)
        return LinearProbe(c_grid=c_grid, select_by=select_by, val_fraction=val_fraction, random_state=seed)
    if head == "knn":
        return KNNHead()
    raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")


def _score_block(
    template: LinearProbe | KNNHead, X: np.ndarray, labels: np.ndarray, train: np.ndarray, split: _Split
) -> dict[str, Any]:
    """Fit a clone of the head on `X[train]` and score it on the test rows of `X [N, D]`."""
    estimator = clone(template).fit(X[train], labels[train])
    hyperparameters = {"C": estimator.C_} if isinstance(estimator, LinearProbe) else {"k": estimator.k_}
    known_probs = estimator.predict_proba(X[split.known_test])
    unknown_probs = estimator.predict_proba(X[split.unknown_test])
    known_labels = labels[split.known_test]
    predicted = estimator.classes_[known_probs.argmax(axis=1)]
    return {
        "accuracy": metrics.accuracy(known_labels, predicted),
        "auroc": metrics.auroc(
            estimator.decision_scores(X[split.known_test], "msp"),
            estimator.decision_scores(X[split.unknown_test], "msp"),
        ),
        "oscr": metrics.oscr(known_probs, np.searchsorted(estimator.classes_, known_labels), unknown_probs),
        "macro_f1": metrics.macro_f1(known_labels, predicted, estimator.classes_),
        "hyperparameters": hyperparameters,
    }
