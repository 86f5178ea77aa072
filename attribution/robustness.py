"""Robustness of a trained head: the test images (known and unknown) perturbed at each level, their
features (cached under the perturbed copy's own key) scored by the same head as the clean ones.

`evaluate(..., perturb=[...])` calls `robustness_figures` for its best block and reports
`report["robustness"][name][level]` with `accuracy`, `auroc` and `oscr` beside the clean figures.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from attribution.backbone import Backbone
from attribution.features import FeatureCache, extract_features
from attribution.images import open_image, sha256_of
from attribution.perturb import Perturbation, level_text, perturbation_seed, perturbed_sha256

METRICS = ("accuracy", "auroc", "oscr")
# figures(X_known [Nk, D], X_unknown [Nu, D]) -> {"accuracy", "auroc", "oscr", ...} of a trained head
Figures = Callable[[np.ndarray, np.ndarray], dict[str, Any]]


def _loader(path: Path, perturbation: Perturbation, seed: int) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        return perturbation.apply(open_image(path), seed=seed)

    return load


def perturbed_features(
    backbone: Backbone,
    paths: Sequence[Path],
    perturbation: Perturbation,
    blocks: Sequence[int],
    *,
    sha256s: Sequence[str] | None = None,
    cache: FeatureCache | None = None,
    seed: int = 0,
    batch_size: int = 32,
) -> dict[int, np.ndarray]:
    """Features `{block: [N, D]}` of the files perturbed by `perturbation` (each with its own seed, fixed by
    the file's sha256 and `seed`); with a cache, keyed by `perturbed_sha256`, so a rerun computes nothing."""
    shas = list(sha256s) if sha256s is not None else [sha256_of(path) for path in paths]
    sources = [
        _loader(Path(path), perturbation, perturbation_seed(sha, perturbation, seed))
        for path, sha in zip(paths, shas, strict=True)
    ]
    keys = [perturbed_sha256(sha, perturbation, seed) for sha in shas]
    return extract_features(backbone, sources, blocks, cache=cache, sha256s=keys, batch_size=batch_size)


def with_perturbed_copies(
    backbone: Backbone,
    features: dict[int, np.ndarray],
    labels: np.ndarray,
    train: dict[str, np.ndarray],
    paths: Sequence[Path],
    perturbations: Sequence[Perturbation],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    batch_size: int = 32,
) -> tuple[dict[int, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """Robust training in an evaluation: one perturbed copy of each training row (`train`: class -> rows of
    `features {block: [N, D]}` and `labels [N]`, files `paths [N]`) per perturbation, appended as new rows;
    returns the features, labels and training rows with the copies (test rows are left alone)."""
    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    rows = np.concatenate(list(train.values()))
    blocks = sorted(features)
    shas = [sha256_of(paths[row]) for row in rows]
    parts = {block: [features[block]] for block in blocks}
    for perturbation in perturbations:
        copies = perturbed_features(
            backbone, [paths[row] for row in rows], perturbation, blocks, sha256s=shas, cache=cache, seed=seed,
            batch_size=batch_size,
        )  # fmt: skip
        for block in blocks:
            parts[block].append(copies[block])
    n, position = len(labels), {int(row): i for i, row in enumerate(rows)}
    new_train = {
        name: np.concatenate(
            [
                class_rows,
                *[
                    n + k * len(rows) + np.asarray([position[int(r)] for r in class_rows], dtype=int)
                    for k in range(len(perturbations))
                ],
            ]
        )  # fmt: skip
        for name, class_rows in train.items()
    }
    new_labels = np.concatenate([labels, *[labels[rows]] * len(perturbations)])
    return {block: np.concatenate(parts[block]) for block in blocks}, new_labels, new_train


def robustness_figures(
    perturbations: Sequence[Perturbation],
    *,
    backbone: Backbone,
    block: int,
    known_paths: Sequence[Path],
    unknown_paths: Sequence[Path],
    figures: Figures,
    feature_transform: Callable[[np.ndarray], np.ndarray] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, dict[str, dict[str, Any]]]:
    """`{name: {level: {"accuracy", "auroc", "oscr", ...}}}`: `figures` of the perturbed known and unknown
    test images' block-`block` features (passed through `feature_transform` when the head reads something
    other than the raw block features)."""
    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    known_shas = [sha256_of(path) for path in known_paths]
    unknown_shas = [sha256_of(path) for path in unknown_paths]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    with tqdm(total=len(perturbations), desc="perturbations", unit="level", disable=not progress) as bar:
        for perturbation in perturbations:
            X = []
            for paths, shas in ((known_paths, known_shas), (unknown_paths, unknown_shas)):
                features = perturbed_features(
                    backbone, paths, perturbation, [block], sha256s=shas, cache=cache, seed=seed, batch_size=batch_size
                )[block]
                X.append(feature_transform(features) if feature_transform is not None else features)
            scores = figures(X[0], X[1])
            out.setdefault(perturbation.name, {})[level_text(perturbation.level)] = {
                key: value for key, value in scores.items() if isinstance(value, (int, float, str)) or value is None
            }
            bar.update()
    return out


def format_robustness(report: dict[str, Any]) -> str:
    """Table in percent: the clean figures, then each perturbation and level."""
    lines = [f"{'perturbation':>14}  {'accuracy':>8}  {'AUROC':>6}  {'OSCR':>6}"]
    clean = report.get("robustness_clean")
    if clean:
        lines.append(
            f"{'clean':>14}  {100 * clean['accuracy']:8.1f}  {100 * clean['auroc']:6.1f}  {100 * clean['oscr']:6.1f}"
        )
    for name, levels in report["robustness"].items():
        for level, scores in levels.items():
            lines.append(
                f"{name + ' ' + level:>14}  {100 * scores['accuracy']:8.1f}  {100 * scores['auroc']:6.1f}  "
                f"{100 * scores['oscr']:6.1f}"
            )
    return "\n".join(lines)


def plot_robustness(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """PNG: one panel per perturbation, accuracy / AUROC / OSCR (percent) against level, the clean figure
    as a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    robustness = report["robustness"]
    clean = report.get("robustness_clean", {})
    names = list(robustness)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.4), dpi=120, squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        levels = list(robustness[name])
        x = np.arange(len(levels))
        for metric, marker, colour in zip(METRICS, "os^", ("C0", "C1", "C2"), strict=True):
            ax.plot(
                x,
                [100 * robustness[name][level][metric] for level in levels],
                marker=marker,
                color=colour,
                label=metric,
            )
            if metric in clean:
                ax.axhline(100 * clean[metric], color=colour, linestyle=":", linewidth=1)
        ax.set_xticks(x, levels)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("level")
        ax.set_ylim(0, 102)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("% (dotted: clean)")
    axes[0][0].legend(fontsize=7)
    settings = report.get("settings", {})
    fig.suptitle(f"robustness, block {report.get('robustness_block')}, {settings.get('backbone', '')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
