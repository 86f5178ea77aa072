"""The paper's evaluation protocol on an ImageFolder, block by block.

Each known class is split by seed into a training part (70 %, from which the head holds out
its own validation split to choose C or k) and a test part (30 %); the unknown classes are
test only. Features of every requested block come from one forward pass per batch, then for
each block a head is trained as a training job trains it (`attribution.training.train_head`: C by
`select_by`, the open-set score by `score_method`, the threshold on out-of-fold scores) on the
training part only, and scored on the test part: closed-set accuracy and macro F1 on the known test
images, AUROC and OSCR of the head's score (known test against unknown; `auroc_msp` and `oscr_msp`
with the paper's maximum softmax probability), and the share of known test images accepted and of
unknown ones rejected at the head's threshold. `blocks="auto"` also reports the head on the block(s)
chosen by `attribution.blockchoice.choose_blocks` on the training part (`report["auto"]`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from attribution import metrics
from attribution.backbone import Backbone, load_backbone
from attribution.config import OFFLINE_BACKBONE, BackboneConfig
from attribution.features import FeatureCache, extract_features, join_blocks
from attribution.heads import SELECT_BY, LinearProbe
from attribution.images import ImageRejected, open_image, sha256_of
from attribution.openset import SCORE_METHODS, max_cosine_similarity
from attribution.training import AUTO, TrainConfig, TrainResult, train_head

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
    known: Sequence[str] = (),
    unknown: Sequence[str] = (),
    blocks: Sequence[int] | str,
    head: str = "linear",
    select_by: str = "logo",
    score_method: str = AUTO,
    unknown_val: Sequence[str] | None = None,
    tpr: float = 0.95,
    real_label: str = "real",
    c_grid: Sequence[float] | np.ndarray | None = None,
    shots: int | Sequence[int] | None = None,
    backbone_config: BackboneConfig = OFFLINE_BACKBONE,
    device: str = "cpu",
    batch_size: int = 32,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    layout: str = "imagefolder",
    genimage_split: int | str | None = None,
    per_class: int | None = None,
    test_per_class: int | None = None,
    perturb: Sequence[str] | None = None,
    robust_train: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Evaluate open-set attribution with the CLS features of each block in `blocks`.

    `layout="genimage"` with `genimage_split` 1..5 runs the paper's GenImage split (`attribution/genimage.py`:
    known and unknown classes from the authors' lists, train/ to train on, at most `per_class` per class,
    val/ to test on, at most `test_per_class`; features cached in `genimage.default_cache_dir()` unless
    `cache_dir` is given); `genimage_split="all"` returns the mean over the five (`genimage.mean_reports`). Every
    report names its classes in `"split"` and its protocol in `"protocol"`. `perturb` (e.g.
    `["jpeg:90,75", "blur:1"]`) scores the best block's head on perturbed test images:
    `report["robustness"][name][level]` with `accuracy`, `auroc`, `oscr`; `robust_train` (perturbations
    in the same form) adds a perturbed copy of every training image per entry to the training set.

    `shots=N` trains on N images per known class; a list of N also reports each of them under
    `"shots"` (reusing the features) while `"blocks"` uses the whole training part. Returns
    `{"blocks": {"8": {"accuracy", "auroc", "oscr", "macro_f1", "hyperparameters"}}, "best_block",
    "settings"}`, metrics as fractions. Unreadable files are skipped with an `UnreadableImagesWarning`.
    The linear probe's C is chosen by `select_by` on its validation split ("logo": held-out known
    generators; "accuracy"; "paper": AUROC of the MSP against the images of the `unknown_val` classes,
    which are left out of training; when they are also `unknown` test classes the report says
    `"optimistic": true`, as the paper's figures are); `c_grid=None` is the paper's sweep.
    `score_method` is a name of `attribution.openset.SCORE_METHODS` or "auto" (chosen by held-out OSCR);
    the threshold accepts `tpr` of the known images' out-of-fold scores. Each block's entry also has
    `select_by`, `score_method`, `C` (or `k`), `threshold`, `known_acceptance_at_threshold` and
    `unknown_rejection_at_threshold` (on the test split); `blocks="auto"` adds `"auto"` with the chosen
    `blocks`, `feature_join`, the candidates and the same figures.
    """
    if layout == "genimage" and str(genimage_split) == "all":  # the paper's table: the mean over its five splits
        from attribution.genimage import genimage_splits, mean_reports

        options = dict(locals())
        del options["data_dir"], options["genimage_split"]
        return mean_reports({n: evaluate(data_dir, genimage_split=n, **options) for n in genimage_splits()})
    fixed = None
    if layout == "genimage":  # the authors' split of GenImage: train/ to train, val/ to test
        from attribution import genimage

        fixed = genimage.split_files(
            data_dir,
            genimage.genimage_split(genimage_split or 0),
            per_class=per_class,
            test_per_class=test_per_class,
            seed=seed,
        )
        known, unknown = list(fixed.split.known), list(fixed.split.unknown)
        if select_by == "paper" and not unknown_val:
            unknown_val = unknown  # as the authors choose C: against the unknown generators' val images
        cache_dir = genimage.default_cache_dir() if cache_dir is None else cache_dir
    elif layout != "imagefolder":
        raise ValueError(f"layout must be imagefolder or genimage, got {layout!r}")
    config = _config(head, select_by, score_method, unknown_val, c_grid, seed, tpr, real_label)
    auto_blocks = isinstance(blocks, str)
    if auto_blocks and blocks != "auto":
        raise ValueError(f'blocks must be block numbers or "auto", got {blocks!r}')
    shot_list = _shot_list(shots)
    if overlap := sorted(set(unknown_val or []) & set(known)):
        raise ValueError(f"classes both known and unknown-val: {', '.join(overlap)}")
    validation = [name for name in (unknown_val or []) if name not in unknown]
    files = _class_files(data_dir, list(known), list(unknown), validation) if fixed is None else fixed.class_files()
    for name in known:  # fail before the forward passes; checked again once unreadable files are out
        _check_class_size(name, len(files[name]), shot_list)
    backbone = load_backbone(backbone_config, device=device)
    take = backbone.validate_blocks(range(backbone.num_blocks) if isinstance(blocks, str) else blocks)
    paths, features, skipped = _extract(
        backbone, [p for ps in files.values() for p in ps], take, cache_dir, batch_size, progress
    )
    labels, split = _split(
        files, paths, list(known), list(unknown), seed, shot_list, None if fixed is None else fixed.test_paths()
    )
    if robust_train:  # perturbed copies of the training images join the training set
        from attribution.perturb import parse_perturbations
        from attribution.robustness import with_perturbed_copies

        features, labels, robust_rows = with_perturbed_copies(
            backbone, features, labels, split.train, paths, parse_perturbations(robust_train),
            cache_dir=cache_dir, seed=seed, batch_size=batch_size,
        )  # fmt: skip
        split = _Split(robust_rows, split.known_test, split.unknown_test)
    val_rows = np.flatnonzero(np.isin(labels, list(unknown_val or [])))

    single = len(shot_list) == 1 and isinstance(shots, int)
    main_shots = shot_list[0] if single else None
    runs = [main_shots] + ([] if single or not shot_list else shot_list)
    results: dict[int | None, dict[str, dict[str, Any]]] = {n: {} for n in runs}
    with tqdm(total=len(runs) * len(take), desc="fitting heads", unit="head", disable=not progress) as bar:
        for n in runs:
            train = np.concatenate([rows if n is None else rows[:n] for rows in split.train.values()])
            for block in take:
                results[n][str(block)] = _score_block(config, features[block], labels, train, split, val_rows)
                bar.update()

    report: dict[str, Any] = {"blocks": results[main_shots], "best_block": best_block(results[main_shots])}
    if auto_blocks:
        report["auto"] = _auto(config, features, labels, split, val_rows, main_shots)
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
        "score_method": score_method,
        "unknown_val": list(unknown_val or []),
        "optimistic": bool(set(unknown_val or []) & set(unknown)),
        "threshold_tpr": tpr,
        "shots": shots if shots is None or isinstance(shots, int) else list(shot_list),
        "seed": seed,
        "split": {"train": round(1 - TEST_FRACTION - VAL_FRACTION, 6), "val": VAL_FRACTION, "test": TEST_FRACTION},
        "selection": (
            f"C by validation {select_by} (c_grid {'paper' if c_grid is None else list(c_grid)}), "
            "then refit on train and val; score "
            + ("chosen by held-out-generator OSCR" if score_method == AUTO else score_method)
            + "; threshold on out-of-fold known scores"
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
    report |= _split_and_robustness(
        config, features, labels, split, val_rows, paths, backbone, report, fixed, select_by, per_class,
        perturb, robust_train, cache_dir, seed, batch_size, progress,
    )  # fmt: skip
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


def _class_files(
    data_dir: str | os.PathLike[str], known: list[str], unknown: list[str], validation: list[str] | None = None
) -> dict[str, list[Path]]:
    """The files of each requested class, known classes first, then unknown, then unknown-val only;
    ValueError for a bad request."""
    folders = list_classes(data_dir)
    if len(known) < 2 or not unknown:
        raise ValueError("the protocol needs at least two known classes and one unknown class")
    if overlap := sorted(set(known) & set(unknown)):
        raise ValueError(f"classes both known and unknown: {', '.join(overlap)}")
    names = [*known, *unknown, *(validation or [])]
    if missing := [name for name in names if name not in folders]:
        raise ValueError(f"unknown class {missing[0]!r}; available classes: {', '.join(folders) or 'none'}")
    if empty := [name for name in names if not folders[name]]:
        raise ValueError(f"class folder {empty[0]!r} is empty")
    return {name: folders[name] for name in names}


def _split(
    files: dict[str, list[Path]],
    paths: list[Path],
    known: list[str],
    unknown: list[str],
    seed: int,
    shots: list[int],
    test_paths: set[Path] | None = None,
) -> tuple[np.ndarray, _Split]:
    """Labels `[N]` of the extracted `paths` and the seeded split of their rows (`test_paths`: a fixed
    split, those files are the known test images and the others train)."""
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
        if test_paths is not None:
            is_test = np.asarray([paths[row] in test_paths for row in order], dtype=bool)
            if is_test.all() or not is_test.any():
                raise ValueError(f"class {name!r} needs both training and test images")
            known_test.append(order[is_test])
            train[name] = order[~is_test]
            continue
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


def _config(
    head: str,
    select_by: str,
    score_method: str,
    unknown_val: Sequence[str] | None,
    c_grid: Sequence[float] | np.ndarray | None,
    seed: int,
    tpr: float,
    real_label: str,
) -> TrainConfig:
    """The training configuration every block's head gets; ValueError for a bad request."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    if select_by not in SELECT_BY:
        raise ValueError(f"select_by must be one of {', '.join(SELECT_BY)}, got {select_by!r}")
    if score_method != AUTO and score_method not in SCORE_METHODS:
        raise ValueError(f"score must be auto or one of {', '.join(SCORE_METHODS)}, got {score_method!r}")
    if select_by == "paper" and not unknown_val:
        raise ValueError("--select-by paper needs --unknown-val: the generators whose images choose C")
    return TrainConfig(
        head="linear" if head == "linear" else "knn",
        c_grid=None if c_grid is None else [float(c) for c in c_grid],
        select_by=select_by,
        score_method=score_method,
        random_state=seed,
        tpr=tpr,
        real_label=real_label,
        # The head's validation split is VAL_FRACTION of the whole class: this share of the training part.
        val_fraction=VAL_FRACTION / (1 - TEST_FRACTION),
    )


def _score_block(
    config: TrainConfig,
    X: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    split: _Split,
    val_rows: np.ndarray,
) -> dict[str, Any]:
    """Train a head on `X[train]` (as a training job does) and score it on the test rows of `X [N, D]`."""
    unknown_features = X[val_rows] if config.select_by == "paper" else None
    result = train_head(X[train], labels[train], config=config, unknown_features=unknown_features)
    return _test_figures(result, X[train], X[split.known_test], labels[split.known_test], X[split.unknown_test])


def _test_figures(
    result: TrainResult, X_train: np.ndarray, X_known: np.ndarray, known_labels: np.ndarray, X_unknown: np.ndarray
) -> dict[str, Any]:
    """Test-split figures of a trained head: closed set, open set with its score and with MSP, and what
    its threshold accepts and rejects."""
    estimator = result.estimator

    def scores(X: np.ndarray, method: str) -> np.ndarray:
        linear_knn = method == "knn" and isinstance(estimator, LinearProbe)
        similarity = max_cosine_similarity(X, X_train) if linear_knn else None
        return estimator.decision_scores(X, method, knn_similarity=similarity, gaussian=result.gaussian)

    known_probs = estimator.predict_proba(X_known)
    unknown_probs = estimator.predict_proba(X_unknown)
    predicted = estimator.classes_[known_probs.argmax(axis=1)]
    correct = predicted == known_labels
    known_scores, unknown_scores = scores(X_known, result.score_method), scores(X_unknown, result.score_method)
    hyperparameters = result.hyperparameters
    training = result.metrics
    return {
        "accuracy": metrics.accuracy(known_labels, predicted),
        "auroc": metrics.auroc(known_scores, unknown_scores),
        "oscr": metrics.oscr_scores(known_scores, correct, unknown_scores),
        "auroc_msp": metrics.auroc(known_probs.max(axis=1), unknown_probs.max(axis=1)),
        "oscr_msp": metrics.oscr(known_probs, np.searchsorted(estimator.classes_, known_labels), unknown_probs),
        "macro_f1": metrics.macro_f1(known_labels, predicted, estimator.classes_),
        "select_by": hyperparameters.get("select_by"),
        "score_method": result.score_method,
        **({"C": hyperparameters["C"]} if "C" in hyperparameters else {"k": hyperparameters["k"]}),
        "threshold": float(result.threshold),
        "threshold_tpr": training["threshold_tpr"],
        "known_acceptance_at_threshold": float(np.mean(known_scores >= result.threshold)),
        "unknown_rejection_at_threshold": float(np.mean(unknown_scores < result.threshold)),
        "hyperparameters": hyperparameters,
        "training": {
            key: training.get(key)
            for key in ("accuracy", "auroc", "oscr", "known_acceptance_at_threshold", "unknown_rejection_at_threshold")
        }
        | {"score_comparison": training.get("score_comparison")},
    }


def _auto(
    config: TrainConfig,
    features: dict[int, np.ndarray],
    labels: np.ndarray,
    split: _Split,
    val_rows: np.ndarray,
    shots: int | None,
) -> dict[str, Any]:
    """`blocks="auto"`: choose the block(s) on the training part (on `c_grid` when one is given, else on
    `BLOCK_C_GRID`), then train and score as `_score_block`."""
    from attribution.blockchoice import BLOCK_C_GRID, choose_blocks

    train = np.concatenate([rows if shots is None else rows[:shots] for rows in split.train.values()])
    try:
        choice = choose_blocks(
            {b: f[train] for b, f in features.items()},
            labels[train],
            real_label=config.real_label,
            class_weight=config.class_weight,
            random_state=config.random_state,
            c_grid=BLOCK_C_GRID if config.c_grid is None else config.c_grid,
        )
    except ValueError as error:
        return {"blocks": None, "skipped": str(error)}
    X = join_blocks(features, choice.blocks, choice.feature_join)
    return choice.as_dict() | _score_block(config, X, labels, train, split, val_rows)


def _split_and_robustness(
    config: TrainConfig,
    features: dict[int, np.ndarray],
    labels: np.ndarray,
    split: _Split,
    val_rows: np.ndarray,
    paths: list[Path],
    backbone: Backbone,
    report: dict[str, Any],
    fixed: Any,
    select_by: str,
    per_class: int | None,
    perturb: Sequence[str] | None,
    robust_train: Sequence[str] | None,
    cache_dir: str | os.PathLike[str] | None,
    seed: int,
    batch_size: int,
    progress: bool,
) -> dict[str, Any]:
    """`split` (the classes used), `protocol`, and with `perturb` the best block's head on perturbed test
    images (`robustness`, `robustness_block`, `robustness_clean`)."""
    settings = report["settings"]
    extra: dict[str, Any] = {}
    if fixed is not None:
        from attribution.genimage import genimage_source, protocol_report

        extra["split"] = fixed.split.as_dict() | {"source": genimage_source()}
        extra["protocol"] = protocol_report(fixed, per_class=per_class, select_by=select_by)
    else:
        extra["split"] = {"known": settings["known"], "unknown": settings["unknown"]}
        extra["protocol"] = {
            "name": "imagefolder",
            "train": f"a seeded {settings['split']['train'] + settings['split']['val']:.0%} of each known class "
            f"(of which {settings['split']['val']:.0%} of the class chooses C)",
            "test": f"the other {settings['split']['test']:.0%} of each known class and every unknown class image",
        }
    extra["protocol"]["robust_training"] = list(robust_train or [])
    settings["cache_dir"] = None if cache_dir is None else str(cache_dir)
    if not perturb:
        return extra
    from attribution.perturb import parse_perturbations
    from attribution.robustness import robustness_figures

    block = int(report["best_block"])
    train = np.concatenate(list(split.train.values()))
    X = features[block]
    result = train_head(
        X[train], labels[train], config=config, unknown_features=X[val_rows] if config.select_by == "paper" else None
    )
    known_labels = labels[split.known_test]
    extra["robustness"] = robustness_figures(
        parse_perturbations(perturb),
        backbone=backbone,
        block=block,
        known_paths=[paths[row] for row in split.known_test],
        unknown_paths=[paths[row] for row in split.unknown_test],
        figures=lambda X_known, X_unknown: _test_figures(result, X[train], X_known, known_labels, X_unknown),
        cache_dir=cache_dir,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
    extra["robustness_block"] = block
    extra["robustness_clean"] = {key: report["blocks"][str(block)][key] for key in METRIC_NAMES}
    return extra
