"""Before/after figures of docs/quality.md: the head a training job builds, on the synthetic benchmark.

    python docs/quality_bench.py --code new --seeds 0,1,2 --per-class 50 --out var/quality/new.json
    python docs/quality_bench.py --code old --seeds 0,1,2 --per-class 50 --out var/quality/old.json

`--code old` runs the engine of another checkout (`--old-root`, e.g. `git archive e5e40d0 attribution |
tar -x -C /tmp/old`): its `train_head` with its defaults (C by validation accuracy, MSP, threshold on the
hold-one-generator-out heads' known scores). `--code new` runs this checkout's `train_head` with the new
defaults (C by held-out-generator OSCR, the score chosen by held-out OSCR, threshold on out-of-fold
scores), on block 8 and on `blocks="auto"`, and the new code with the old choices (`accuracy`, `msp`) to
separate the solver, class weights and threshold from the selection. Every head is trained on the
training part (70 %) of the known classes of `evaluate`'s seeded split and measured on the test part
and the unknown classes; features are cached (`--cache-dir`), so the old and new runs share them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

KNOWN = ["real", "tconv-s1", "nearest-s1", "bilinear-s1", "pixelshuffle-s1"]
UNKNOWN = ["tconv-s2", "nearest-s2", "bilinear-s2", "pixelshuffle-s2"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", choices=("old", "new"), required=True)
    parser.add_argument("--old-root", default="/tmp/old")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--data-root", type=Path, default=Path("var/quality"))
    parser.add_argument("--cache-dir", type=Path, default=Path("var/quality/cache"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--skip-auto", action="store_true", help="no blocks-auto run (the slowest)")
    args = parser.parse_args()
    root = Path(args.old_root if args.code == "old" else Path(__file__).resolve().parents[1])
    sys.path.insert(0, str(root))
    import attribution

    assert Path(attribution.__file__).resolve().parent == (root / "attribution").resolve(), attribution.__file__
    results: dict[str, Any] = {"code": args.code, "per_class": args.per_class, "seeds": {}}
    for seed in [int(s) for s in args.seeds.split(",")]:
        data = args.data_root / f"synth-s{seed}-n{args.per_class}"
        if not data.exists():
            from attribution.synth import make_benchmark

            make_benchmark(data, seed=seed, per_class=args.per_class)
        features, labels, train, known_test, unknown_test = _features(data, seed, args.cache_dir)
        runs: dict[str, Any] = {}
        if args.code == "old":
            runs["old defaults, block 8"] = _measure(features[8], labels, train, known_test, unknown_test, {})
        else:
            from attribution.training import TrainConfig

            old_choices = TrainConfig(select_by="accuracy", score_method="msp")
            runs["new code, accuracy C, msp, block 8"] = _measure(
                features[8], labels, train, known_test, unknown_test, {"config": old_choices}
            )
            runs["new defaults, block 8"] = _measure(features[8], labels, train, known_test, unknown_test, {})
            if not args.skip_auto:
                runs["new defaults, blocks auto"] = _auto(features, labels, train, known_test, unknown_test)
        results["seeds"][str(seed)] = runs
        print(
            seed,
            json.dumps(
                {k: {m: v[m] for m in ("accuracy", "auroc", "oscr", "known_acceptance")} for k, v in runs.items()}
            ),
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


def _features(
    data: Path, seed: int, cache_dir: Path
) -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every block's features, labels and evaluate's seeded split (train part, known test, unknown test)."""
    from attribution.backbone import load_backbone
    from attribution.config import OFFLINE_BACKBONE
    from attribution.evaluate import _class_files, _extract, _split

    files = _class_files(data, KNOWN, UNKNOWN)
    backbone = load_backbone(OFFLINE_BACKBONE)
    paths, features, _ = _extract(
        backbone, [p for ps in files.values() for p in ps], tuple(range(12)), cache_dir, 32, False
    )
    labels, split = _split(files, paths, KNOWN, UNKNOWN, seed, [])
    train = np.concatenate(list(split.train.values()))
    return features, labels, train, split.known_test, split.unknown_test


def _measure(
    X: np.ndarray, labels: np.ndarray, train: np.ndarray, known: np.ndarray, unknown: np.ndarray, kwargs: dict[str, Any]
) -> dict[str, Any]:
    from attribution import metrics
    from attribution.openset import max_cosine_similarity
    from attribution.training import train_head

    start = time.perf_counter()
    result = train_head(X[train], labels[train], **kwargs)
    seconds = time.perf_counter() - start
    method = getattr(result, "score_method", result.metrics.get("score_method", "msp"))
    gaussian = getattr(result, "gaussian", None)
    estimator = result.estimator

    def scores(rows: np.ndarray) -> np.ndarray:
        similarity = max_cosine_similarity(X[rows], X[train]) if method == "knn" else None
        extra = {"gaussian": gaussian} if gaussian is not None else {}
        return estimator.decision_scores(X[rows], method, knn_similarity=similarity, **extra)

    known_scores, unknown_scores = scores(known), scores(unknown)
    predicted = estimator.predict(X[known])
    correct = predicted == labels[known]
    known_probs = estimator.predict_proba(X[known])
    unknown_probs = estimator.predict_proba(X[unknown])
    return {
        "accuracy": metrics.accuracy(labels[known], predicted),
        "auroc": metrics.auroc(known_scores, unknown_scores),
        "oscr": _oscr(known_scores, correct, unknown_scores),
        "auroc_msp": metrics.auroc(known_probs.max(axis=1), unknown_probs.max(axis=1)),
        "known_acceptance": float(np.mean(known_scores >= result.threshold)),
        "unknown_rejection": float(np.mean(unknown_scores < result.threshold)),
        "score_method": method,
        "C": getattr(estimator, "C_", None),
        "train_seconds": round(seconds, 2),
    }


def _oscr(known_scores: np.ndarray, correct: np.ndarray, unknown_scores: np.ndarray) -> float:
    """OSCR of any score (the old code has only the probability version)."""
    unknown = np.sort(unknown_scores)
    hits = np.sort(known_scores[correct])
    thresholds = np.unique(np.concatenate([known_scores, unknown]))[::-1]
    ccr = (hits.size - np.searchsorted(hits, thresholds, side="left")) / known_scores.size
    fpr = (unknown.size - np.searchsorted(unknown, thresholds, side="left")) / unknown.size
    return float(np.trapezoid(np.concatenate([[0.0], ccr]), np.concatenate([[0.0], fpr])))


def _auto(
    features: dict[int, np.ndarray], labels: np.ndarray, train: np.ndarray, known: np.ndarray, unknown: np.ndarray
) -> dict[str, Any]:
    from attribution.blockchoice import choose_blocks
    from attribution.features import join_blocks

    start = time.perf_counter()
    choice = choose_blocks({b: f[train] for b, f in features.items()}, labels[train])
    choose_seconds = time.perf_counter() - start
    X = join_blocks(features, choice.blocks, choice.feature_join)
    return _measure(X, labels, train, known, unknown, {}) | {
        "blocks": choice.blocks,
        "feature_join": choice.feature_join,
        "choose_seconds": round(choose_seconds, 2),
    }


if __name__ == "__main__":
    main()
