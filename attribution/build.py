"""A training job's machine learning as one pure function: per-block reference features in, a head
artifact with its metrics out.

The web app's training service loads the references and their features, calls `build_head`, and saves
what it returns; nothing here knows about Django, storage or the job's database row. Training-only:
inference never imports this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from attribution.artifact import HeadArtifact
from attribution.config import DEFAULT_BLOCKS
from attribution.features import join_blocks
from attribution.training import TrainConfig, TrainingCancelled, train_head

# progress(step, fraction of the whole build in [0, 1], message or None)
BuildProgress = Callable[[str, float, "str | None"], None]
ShouldStop = Callable[[], bool]


@dataclass(frozen=True)
class BackboneInfo:
    """Who made the features: what a head records to refuse features of another backbone later."""

    identity: str
    model_name: str
    pretrained: bool

    @property
    def pretrained_tag(self) -> str | None:
        return self.identity.split("/", 1)[1] if self.pretrained else None


@dataclass
class HeadBuild:
    """A trained head ready to save (`artifact`) and its JSON-safe `metrics` (hyper-parameters and the
    per-block sweep included) for the head version's record."""

    artifact: HeadArtifact
    head_kind: str
    blocks: list[int]
    threshold: float
    metrics: dict[str, Any]


def build_head(
    by_block: Mapping[int, np.ndarray],
    labels: Sequence[str],
    *,
    sample_ids: Sequence[str],
    backbone: BackboneInfo,
    blocks: Sequence[int] | str,
    config: TrainConfig = TrainConfig(),
    progress: BuildProgress | None = None,
    should_stop: ShouldStop | None = None,
    sweep: bool = True,
) -> HeadBuild:
    """Train a head on `by_block {block: [N, D]}` (every block computed; the head reads `blocks`) with
    `labels [N]` and `sample_ids [N]` (the references' sha256), then run the per-block sweep.

    `blocks="auto"` chooses the block, or an L2-normalised join of the best 2-3 blocks, by held-out
    generator OSCR (`attribution.blockchoice.choose_blocks`, recorded in `metrics["block_choice"]`); with
    too few classes for that it falls back to `DEFAULT_BLOCKS` (the reason in `block_choice`). The
    head's open-set score is `result.score_method` (chosen by data under `score_method="auto"`).

    Progress: training takes fractions 0-0.9 of the build, the sweep 0.9-1. `should_stop()` is asked
    between steps and raises `TrainingCancelled`.
    """
    report = progress or (lambda step, fraction, message: None)
    feature_join, block_choice = "concat", None
    if isinstance(blocks, str):
        if blocks != "auto":
            raise ValueError(f'blocks must be a list of block numbers or "auto", got {blocks!r}')
        head_blocks, feature_join, block_choice = _auto_blocks(by_block, labels, config, report, should_stop)
    else:
        head_blocks = [int(block) for block in blocks]
    features = join_blocks(dict(by_block), head_blocks, feature_join)
    result = train_head(
        features,
        labels,
        sample_ids=sample_ids,
        config=config,
        progress=lambda step, fraction: report(step, 0.9 * fraction, None),
        should_stop=should_stop,
    )
    metrics = json_safe(result.metrics)
    C = float(result.hyperparameters.get("C", 1.0))  # a kNN head has no C: the probe's default
    if sweep:
        metrics |= block_sweep(
            by_block, labels, head_blocks=head_blocks, C=C, config=config, progress=report, should_stop=should_stop
        )
    if block_choice is not None:
        metrics["block_choice"] = json_safe(block_choice)
    metrics["blocks"] = head_blocks
    metrics["feature_join"] = feature_join
    metrics["hyperparameters"] = json_safe(result.hyperparameters)
    artifact = HeadArtifact(
        estimator=result.estimator,
        classes=[str(c) for c in result.estimator.classes_],
        backbone_identity=backbone.identity,
        model_name=backbone.model_name,
        pretrained_tag=backbone.pretrained_tag,
        pretrained=backbone.pretrained,
        blocks=head_blocks,
        score_method=result.score_method,
        threshold=result.threshold,
        hyperparameters=result.hyperparameters,
        metrics={key: value for key, value in metrics.items() if key != "hyperparameters"},
        reference_ids=list(sample_ids),
        reference_labels=[str(label) for label in labels],
        reference_features=features,
        feature_join=feature_join,
        gaussian=result.gaussian,
    )
    return HeadBuild(
        artifact=artifact,
        head_kind=result.head_kind,
        blocks=head_blocks,
        threshold=float(result.threshold),
        metrics=metrics,
    )


def _auto_blocks(
    by_block: Mapping[int, np.ndarray],
    labels: Sequence[str],
    config: TrainConfig,
    report: BuildProgress,
    should_stop: ShouldStop | None,
) -> tuple[list[int], str, dict[str, Any]]:
    """`blocks="auto"`: the chosen blocks, their join and the record of the choice."""
    from attribution.blockchoice import choose_blocks

    def step(done: int, total: int) -> None:
        if should_stop is not None and should_stop():
            raise TrainingCancelled("cancelled while choosing blocks")
        report("block_choice", 0.0, f"block candidates measured: {done}/{total}")

    try:
        choice = choose_blocks(
            by_block,
            labels,
            real_label=config.real_label,
            hold_out_real=config.hold_out_real,
            class_weight=config.class_weight,
            random_state=config.random_state,
            progress=step,
        )
    except ValueError as error:
        fallback = [b for b in DEFAULT_BLOCKS if b in by_block] or [sorted(by_block)[len(by_block) // 2]]
        report("block_choice", 0.0, f"blocks {fallback}: {error}")
        return fallback, "concat", {"blocks": fallback, "feature_join": "concat", "fallback": str(error)}
    best = choice.candidates[0]
    report("block_choice", 0.0, f"blocks {choice.blocks} ({choice.feature_join}), held-out OSCR {best['oscr']:.3f}")
    return choice.blocks, choice.feature_join, choice.as_dict()


def block_sweep(
    by_block: Mapping[int, np.ndarray],
    labels: Sequence[str],
    *,
    head_blocks: Sequence[int],
    C: float,
    config: TrainConfig,
    progress: BuildProgress,
    should_stop: ShouldStop | None = None,
) -> dict[str, Any]:
    """The per-block sweep for the head's metrics (`attribution.sweep.sweep_blocks` with the head's C and
    folds; closed set only, the open-set figures would cost about five times as much): `per_block` lists
    `{block, accuracy, macro_f1, auroc (None), head_block}` for every block, or is None with
    `per_block_skipped` saying why."""
    from attribution.sweep import sweep_blocks

    if should_stop is not None and should_stop():
        raise TrainingCancelled("cancelled before the block sweep")
    blocks = sorted(by_block)
    progress(
        "block_sweep",
        0.9,
        f"a linear probe (C {C:.3g}, {config.cv_folds}-fold) on each of blocks {blocks[0]}-{blocks[-1]}",
    )
    try:
        scores = sweep_blocks(by_block, labels, C=C, cv_folds=config.cv_folds, random_state=config.random_state)
    except ValueError as error:  # a class with a single image: nothing to cross-validate
        progress("block_sweep", 1.0, f"skipped: {error}")
        return {"per_block": None, "per_block_skipped": str(error)}
    rows = [score.as_dict() | {"head_block": score.block in head_blocks} for score in scores]
    best = max(rows, key=lambda row: (row["accuracy"], -row["block"]))
    ours = ", ".join(f"block {row['block']} {row['accuracy']:.3f}" for row in rows if row["head_block"])
    progress(
        "block_sweep",
        1.0,
        "accuracy by block: "
        + " ".join(f"{row['accuracy']:.2f}" for row in rows)
        + f"; best block {best['block']} ({best['accuracy']:.3f}); the head's: {ours}",
    )
    return {"per_block": rows, "per_block_protocol": {"probe": "linear", "C": C}}


def json_safe(value: Any) -> Any:
    """`value` with numpy scalars and arrays turned into plain Python (what a JSON field stores)."""

    def default(item: Any) -> Any:
        if isinstance(item, np.generic | np.ndarray):
            return item.tolist()
        raise TypeError(f"{type(item).__name__} is not JSON serialisable")

    return json.loads(json.dumps(value, default=default))
