"""Choose the transformer block(s) a head reads by held-out-generator OSCR (`blocks="auto"`).

Block numbers are 0-based, as in open_clip's `forward_intermediates` (blocks 0..11 of a ViT-B/16; the
paper's figure probably counts 1..12, so its "block 8" may be our 7: hence a choice by data).

Each block's features get the linear probe's leave-one-generator-out sweep (`LinearProbe` with
`select_by="logo"`, on a coarse C grid): its validation split holds out each known generator in turn,
and the block's figure is the mean held-out OSCR of the log maximum softmax probability at its best C.
The best two and three blocks are then tried together, each block's features L2-normalised before the
join (`feature_join="l2"`, so that no block dominates by scale). The best OSCR wins; ties go to fewer
blocks, then to the earlier block (a shorter forward pass). Training-only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attribution.features import join_blocks
from attribution.heads import LinearProbe

# Five C values over most of the paper's range (tried in increasing order, stopping past the peak):
# enough to rank blocks at a fraction of the full sweep's cost.
BLOCK_C_GRID: tuple[float, ...] = (1e-4, 1e-2, 1.0, 1e2, 1e4)


@dataclass
class BlockChoice:
    """The chosen `blocks` (0-based) and their `feature_join`, with every candidate's figures in
    `candidates` (`{"blocks", "feature_join", "auroc", "oscr", "accuracy", "C"}`, best first)."""

    blocks: list[int]
    feature_join: str
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"blocks": self.blocks, "feature_join": self.feature_join, "candidates": self.candidates}


def choose_blocks(
    by_block: Mapping[int, np.ndarray],
    labels: Sequence[str],
    *,
    real_label: str = "real",
    hold_out_real: bool = False,
    class_weight: str | None = "balanced",
    c_grid: Sequence[float] = BLOCK_C_GRID,
    max_join: int = 3,
    random_state: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> BlockChoice:
    """Pick the block, or the L2-normalised join of the best 2..`max_join` blocks, of `by_block
    {block: [N, D]}` with the best held-out OSCR for `labels [N]`. Needs 3 classes or more with 2 samples
    or more each (the held-out runs); else ValueError. `progress(done, total)` after each candidate."""
    y = np.asarray([str(label) for label in labels])
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 3 or counts.min() < 2:
        raise ValueError("choosing blocks by held-out generators needs 3 classes with 2 images or more each")
    blocks = sorted(int(b) for b in by_block)
    total = len(blocks) + max(0, min(max_join, len(blocks)) - 1)
    rows: list[dict[str, Any]] = []

    def measure(chosen: list[int], join: str) -> dict[str, Any]:
        probe = LinearProbe(
            c_grid=list(c_grid),
            select_by="logo",
            class_weight=class_weight,
            real_label=real_label,
            hold_out_real=hold_out_real,
            random_state=random_state,
        ).fit(join_blocks(dict(by_block), chosen, join), y)
        best = probe.selection_["chosen"]
        row = {
            "blocks": chosen,
            "feature_join": join,
            "auroc": best.get("auroc"),
            "oscr": best.get("oscr"),
            "accuracy": best["accuracy"],
            "C": best["C"],
        }
        rows.append(row)
        if progress is not None:
            progress(len(rows), total)
        return row

    singles = [measure([b], "concat") for b in blocks]
    if singles[0]["oscr"] is None:
        raise ValueError("leave-one-generator-out selection was not possible on these classes")
    ranked = sorted(singles, key=lambda r: (-r["oscr"], -r["accuracy"], r["blocks"][0]))
    for size in range(2, min(max_join, len(blocks)) + 1):
        measure(sorted(r["blocks"][0] for r in ranked[:size]), "l2")
    rows.sort(key=lambda r: (-r["oscr"], len(r["blocks"]), -r["accuracy"], max(r["blocks"])))
    return BlockChoice(blocks=list(rows[0]["blocks"]), feature_join=rows[0]["feature_join"], candidates=rows)
