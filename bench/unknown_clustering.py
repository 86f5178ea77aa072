"""Which clustering groups the unknown pile best: average linkage against HDBSCAN on the synthetic benchmark.

Engine only (no Django, no database): the offline backbone's features of `attribution.synth`, a head trained on
"real" and the four known generators (`--references` images each), then `--uploads` images of every class
attributed by it. What the head rejects as unknown is the pile; each method and setting of
`attribution.clustering.cluster_features` groups it, and is scored against the images' true classes:

- purity: members of a cluster's majority class over all clustered members (a registered cluster's references
  are this clean);
- recall: for each unknown generator, the share of its rejected images in the largest cluster it is the
  majority of (what registering that one cluster would learn of it), averaged over the unknown generators;
- found: unknown generators that are the majority of at least one cluster;
- extra: clusters beyond one per found generator (split generators, or groups of known classes);
- F = 2 purity recall / (purity + recall), the figure the choice is made on.

    python -m bench.unknown_clustering [--quick] [--seeds 0,1]

Prints a table per seed and the mean, and writes bench/results/unknown_clustering.json.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import base_parser, int_list, print_table, write_results

AVERAGE_THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4)
HDBSCAN_EPSILONS = (0.0, 0.05, 0.1)  # its cluster_selection_epsilon


def _pile(seed: int, references: int, uploads: int, blocks: list[int]) -> dict[str, Any]:
    """The rejected uploads' features and true classes, and how many of each class were uploaded."""
    from attribution.artifact import HeadArtifact
    from attribution.backbone import load_backbone
    from attribution.build import BackboneInfo, build_head
    from attribution.config import OFFLINE_BACKBONE
    from attribution.features import extract_features
    from attribution.predict import Attributor
    from attribution.synth import CLASSES, DEFAULT_KNOWN, make_benchmark
    from attribution.training import TrainConfig

    backbone = load_backbone(OFFLINE_BACKBONE)
    root = Path(tempfile.mkdtemp(prefix="bench-clusters-"))
    make_benchmark(root, seed=seed, per_class=references + uploads, size=backbone.image_size[0])
    files = {name: sorted((root / name).glob("*.png")) for name in CLASSES}
    train = [(name, path) for name in DEFAULT_KNOWN for path in files[name][:references]]
    test = [(name, path) for name in CLASSES for path in files[name][references:]]
    by_block = extract_features(backbone, [str(p) for _, p in train + test], blocks)
    n = len(train)
    build = build_head(
        {b: f[:n] for b, f in by_block.items()},
        [name for name, _ in train],
        sample_ids=[str(p) for _, p in train],
        backbone=BackboneInfo(backbone.identity, backbone.config.model_name, backbone.pretrained),
        blocks=blocks,
        config=TrainConfig(),
        sweep=False,
    )
    head: HeadArtifact = build.artifact
    attributor = Attributor(backbone, head)
    raw = np.concatenate([by_block[b][n:] for b in blocks], axis=1)
    results = attributor.attribute_features(raw)
    rejected = [i for i, r in enumerate(results) if r.decision == "unknown_generator"]
    # As a head that rejected every unknown generator's image would leave it: those images, and the known
    # classes' images this head rejected (the noise).
    ideal = sorted(set(rejected) | {i for i, (name, _) in enumerate(test) if name not in DEFAULT_KNOWN})
    return {
        pile: {
            "features": np.stack([np.asarray(results[i].features) for i in rows])
            if rows
            else np.zeros((0, raw.shape[1])),
            "truth": [test[i][0] for i in rows],
        }
        for pile, rows in (("rejected", rejected), ("unknown_classes", ideal))
    } | {"known": list(DEFAULT_KNOWN)}


def _score(labels: np.ndarray, truth: Sequence[str], known: Sequence[str]) -> dict[str, Any]:
    clusters = [np.flatnonzero(labels == k) for k in range(int(labels.max(initial=-1)) + 1)]
    majority = [Counter(truth[int(i)] for i in rows).most_common(1)[0] for rows in clusters]
    clustered = sum(len(rows) for rows in clusters)
    purity = sum(count for _, count in majority) / clustered if clustered else 0.0
    pile = Counter(truth)
    unknown = [name for name in pile if name not in known]
    recalls, found = [], 0
    for name in unknown:
        theirs = [count for (label, count) in majority if label == name]
        found += bool(theirs)
        recalls.append(max(theirs, default=0) / pile[name])
    recall = float(np.mean(recalls)) if recalls else 0.0
    return {
        "clusters": len(clusters),
        "clustered": clustered,
        "purity": round(purity, 4),
        "recall": round(recall, 4),
        "found": found,
        "unknown_generators": len(unknown),
        "extra": len(clusters) - found,
        "F": round(2 * purity * recall / (purity + recall), 4) if purity + recall else 0.0,
    }


def _labels(features: np.ndarray, method: str, value: float, size: int) -> np.ndarray:
    """The engine's clustering; HDBSCAN with a `cluster_selection_epsilon` of `value`, which the engine does
    not offer (it fails), called here directly to show it."""
    from attribution.clustering import _finish, cluster_features, cosine_distances, unit_rows

    if method == "hdbscan" and value:
        from sklearn.cluster import HDBSCAN

        raw = HDBSCAN(
            min_cluster_size=size,
            min_samples=size,
            metric="precomputed",
            cluster_selection_epsilon=value,
            allow_single_cluster=True,
            copy=True,
        ).fit_predict(cosine_distances(features))
        return _finish(unit_rows(features), np.asarray(raw, dtype=np.int64), size).labels
    return cluster_features(features, min_cluster_size=size, distance_threshold=value or 0.1, method=method).labels


def run(args: Any) -> dict[str, Any]:
    settings = [("average", t) for t in AVERAGE_THRESHOLDS] + [("hdbscan", e) for e in HDBSCAN_EPSILONS]
    per_seed: dict[str, Any] = {}
    for seed in args.seeds:
        started = time.perf_counter()
        piles = _pile(seed, args.references, args.uploads, args.blocks)
        per_seed[str(seed)] = {"seconds": 0.0}
        for kind in ("rejected", "unknown_classes"):
            pile = piles[kind]
            rows = {}
            for method, value in settings:
                for size in args.min_sizes:
                    name = f"{method} t={value} m={size}"
                    try:
                        labels = _labels(pile["features"], method, value, size)
                    except Exception as error:  # HDBSCAN's epsilon search, in scikit-learn 1.9 with numpy 2.4
                        print(f"{name}: {type(error).__name__}: {error}")
                        continue
                    rows[name] = _score(labels, pile["truth"], piles["known"])
            per_seed[str(seed)][kind] = {"pile": dict(Counter(pile["truth"])), "settings": rows}
            print(f"seed {seed}, {kind}: {dict(Counter(pile['truth']))}")
            print_table(
                f"seed {seed}, pile: {kind}",
                ["setting", "clusters", "clustered", "purity", "recall", "found", "extra", "F"],
                [
                    [name, r["clusters"], r["clustered"], r["purity"], r["recall"], r["found"], r["extra"], r["F"]]
                    for name, r in rows.items()
                ],
            )
        per_seed[str(seed)]["seconds"] = round(time.perf_counter() - started, 1)
    mean: dict[str, Any] = {}
    for kind in ("rejected", "unknown_classes"):
        first = next(iter(per_seed.values()))[kind]["settings"]
        names = [name for name in first if all(name in s[kind]["settings"] for s in per_seed.values())]
        mean[kind] = {
            name: {
                key: round(float(np.mean([s[kind]["settings"][name][key] for s in per_seed.values()])), 4)
                for key in ("purity", "recall", "F", "clusters", "extra")
            }
            for name in names
        }
        print_table(
            f"mean over seeds, pile: {kind}",
            ["setting", "purity", "recall", "F", "clusters", "extra"],
            [[name, m["purity"], m["recall"], m["F"], m["clusters"], m["extra"]] for name, m in mean[kind].items()],
        )
    return {
        "blocks": args.blocks,
        "references": args.references,
        "uploads_per_class": args.uploads,
        "per_seed": per_seed,
        "mean": mean,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int_list, default=None, help="benchmark seeds (default 0,1,2)")
    parser.add_argument("--references", type=int, default=20, help="references per known class")
    parser.add_argument("--uploads", type=int, default=None, help="uploaded images per class (default 40)")
    parser.add_argument("--blocks", type=int_list, default=[8], help="the head's blocks (default 8)")
    parser.add_argument("--min-sizes", type=int_list, default=[3, 5], help="minimum cluster sizes (default 3,5)")
    args = parser.parse_args(argv)
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    args.uploads = args.uploads or (16 if args.quick else 40)
    report = run(args)
    write_results("unknown_clustering", report, args.out)
    return report


if __name__ == "__main__":
    main()
