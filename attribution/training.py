"""Train a head on reference features and measure it the way it will be used: closed-set accuracy by
stratified cross-validation, open-set rejection by holding out each known generator in turn.

Training-only: inference (`attribution.predict`, `attribution.artifact`) never imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

from attribution import metrics as m
from attribution.heads import KNNHead, LinearProbe, limit_threads
from attribution.openset import SCORE_METHODS, calibrate_threshold, max_cosine_similarity

Progress = Callable[[str, float], None]
ShouldStop = Callable[[], bool]
Folds = list[tuple[np.ndarray, np.ndarray]]


class TrainingCancelled(Exception):
    """`should_stop()` answered True between two training steps."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train: `head="auto"` takes the linear probe when every class has at least
    `min_per_class_linear` samples, else kNN. `c_grid=None` is the paper's sweep. Held-out runs leave
    out every class but `real_label` unless `hold_out_real`."""

    head: Literal["auto", "linear", "knn"] = "auto"
    min_per_class_linear: int = 5
    c_grid: Sequence[float] | None = None
    cv_folds: int = 5
    tpr: float = 0.95
    score_method: str = "msp"
    random_state: int = 0
    real_label: str = "real"
    hold_out_real: bool = False


@dataclass
class TrainResult:
    """The head fitted on all the data, its cross-validated metrics and its calibrated threshold."""

    estimator: LinearProbe | KNNHead
    metrics: dict[str, Any]
    threshold: float
    head_kind: str  # "linear" or "knn"

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """What was chosen for the head (C or k) and how, for the head's provenance."""
        if isinstance(self.estimator, LinearProbe):
            return {"head": "linear", "C": self.estimator.C_, "select_by": self.estimator.select_by}
        return {"head": "knn", "k": self.estimator.k_}


def train_head(
    features: np.ndarray,
    labels: Sequence[str],
    *,
    sample_ids: Sequence[str] | None = None,
    config: TrainConfig = TrainConfig(),
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> TrainResult:
    """Fit a head on `features [N, D]` with `labels [N]`, measure it and calibrate its threshold.

    Steps (each reported as `progress(step, fraction_done)`; `should_stop()` is asked before each, and
    before each held-out class, raising `TrainingCancelled`):

    1. "fit": the head on all the data, with C (or k) selected on the data; the evaluation runs below
       reuse that value rather than sweep again (fast; slightly optimistic).
    2. "cross_validation": stratified K-fold (K = min(cv_folds, smallest class), at least 2): accuracy,
       macro F1, per-class recall, confusion matrix. Skipped (metrics None, with a reason) when a class
       has a single sample.
    3. "holdout": for each held-out class g, on the same folds, a head trained without g scores the fold's
       other samples (known) and g's samples (unknown): AUROC and OSCR per class and their means. The
       threshold accepts `tpr` of the pooled known scores; without held-out runs it comes from the
       cross-validated scores, or from the training scores as a last resort (`threshold_source` says which).
    """
    if config.score_method not in SCORE_METHODS:
        raise ValueError(f"unknown score method {config.score_method!r}; expected one of {SCORE_METHODS}")
    if config.head not in ("auto", "linear", "knn"):
        raise ValueError(f"unknown head {config.head!r}; expected auto, linear or knn")
    X = np.asarray(features, dtype=np.float64)
    y = np.asarray([str(label) for label in labels])
    if X.ndim != 2 or len(X) != len(y) or (sample_ids is not None and len(sample_ids) != len(y)):
        raise ValueError(f"features {X.shape}, {len(y)} labels and sample ids must describe the same samples")
    if len(np.unique(y)) < 2:
        raise ValueError(f"training needs at least 2 classes, got {np.unique(y).tolist()}")
    with limit_threads(X.size):
        return _train(X, y, sample_ids, config, _Steps(progress, should_stop))


def _train(
    X: np.ndarray, y: np.ndarray, sample_ids: Sequence[str] | None, config: TrainConfig, step: _Steps
) -> TrainResult:
    classes, counts = np.unique(y, return_counts=True)
    step("fit", 0.0)
    kind = config.head
    if kind == "auto":
        kind = "linear" if counts.min() >= config.min_per_class_linear else "knn"
    estimator: LinearProbe | KNNHead
    if kind == "linear":
        estimator = LinearProbe(c_grid=config.c_grid, random_state=config.random_state).fit(X, y)
        fixed: LinearProbe | KNNHead = clone(estimator).set_params(c_grid=[estimator.C_])
    else:
        estimator = KNNHead(random_state=config.random_state).fit(X, y)
        fixed = clone(estimator).set_params(k_grid=[estimator.k_])
    metrics: dict[str, Any] = {
        "head": kind,
        "score_method": config.score_method,
        "n_samples": len(y),
        "class_counts": dict(zip(classes.tolist(), counts.tolist(), strict=True)),
        "threshold_tpr": config.tpr,
    }

    step("cross_validation", 0.3)
    folds = _folds(y, config) if counts.min() >= 2 else None
    if folds is None:
        metrics |= dict.fromkeys(["accuracy", "macro_f1", "per_class_recall", "confusion", "cv_folds"])
        metrics["closed_set_skipped"] = "a class has a single sample: cross-validation needs two per class"
        cv_scores = None
    else:
        cv_scores = _cross_validate(X, y, fixed, folds, classes, sample_ids, config, metrics)

    held_out = [g for g in classes.tolist() if config.hold_out_real or g != config.real_label]
    pools = _hold_out(X, y, fixed, folds, held_out, config, metrics, step)

    if pools is not None:
        known_pool, unknown_pool = pools
        threshold, source = calibrate_threshold(known_pool, config.tpr), "holdout"
        metrics["unknown_rejection_at_threshold"] = float(np.mean(unknown_pool < threshold))
    elif cv_scores is not None:
        threshold, source = calibrate_threshold(cv_scores, config.tpr), "cross_validation"
        metrics["unknown_rejection_at_threshold"] = None
    else:
        training_scores = _scores(estimator, X, X, config.score_method)
        threshold, source = calibrate_threshold(training_scores, config.tpr), "training"
        metrics["unknown_rejection_at_threshold"] = None
    metrics["threshold_source"] = source
    step("done", 1.0)
    return TrainResult(estimator=estimator, metrics=metrics, threshold=threshold, head_kind=kind)


class _Steps:
    """Reports progress and honours cancellation between steps."""

    def __init__(self, progress: Progress | None, should_stop: ShouldStop | None) -> None:
        self.progress, self.should_stop = progress, should_stop

    def __call__(self, name: str, fraction: float) -> None:
        if self.should_stop is not None and self.should_stop():
            raise TrainingCancelled(f"training cancelled before step {name!r}")
        if self.progress is not None:
            self.progress(name, fraction)


def _folds(y: np.ndarray, config: TrainConfig) -> Folds:
    n_splits = max(2, min(config.cv_folds, int(np.unique(y, return_counts=True)[1].min())))
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=config.random_state)
    return list(splitter.split(np.zeros((len(y), 1)), y))


def _scores(model: LinearProbe | KNNHead, X_train: np.ndarray, X_test: np.ndarray, method: str) -> np.ndarray:
    """Open-set scores `[N]` of `X_test`; `knn` measures similarity to the model's training features."""
    knn_similarity = max_cosine_similarity(X_test, X_train) if method == "knn" else None
    return model.decision_scores(X_test, method, knn_similarity=knn_similarity)


def _cross_validate(
    X: np.ndarray,
    y: np.ndarray,
    fixed: LinearProbe | KNNHead,
    folds: Folds,
    classes: np.ndarray,
    sample_ids: Sequence[str] | None,
    config: TrainConfig,
    metrics: dict[str, Any],
) -> np.ndarray:
    """Closed-set metrics from out-of-fold predictions (into `metrics`); returns out-of-fold scores `[N]`."""
    predicted = np.empty_like(y)
    scores = np.empty(len(y))
    for train, test in folds:
        model = clone(fixed).fit(X[train], y[train])
        predicted[test] = model.predict(X[test])
        scores[test] = _scores(model, X[train], X[test], config.score_method)
    labels = classes.tolist()
    metrics |= {
        "cv_folds": len(folds),
        "accuracy": m.accuracy(y, predicted),
        "macro_f1": m.macro_f1(y, predicted, labels),
        "per_class_recall": m.per_class_recall(y, predicted, labels),
        "confusion": {"labels": labels, "matrix": m.confusion(y, predicted, labels).tolist()},
    }
    if sample_ids is not None:
        metrics["misclassified"] = [
            {"sample_id": sample_ids[int(i)], "label": str(y[i]), "predicted": str(predicted[i])}
            for i in np.flatnonzero(predicted != y)
        ]
    return scores


def _hold_out(
    X: np.ndarray,
    y: np.ndarray,
    fixed: LinearProbe | KNNHead,
    folds: Folds | None,
    held_out: list[str],
    config: TrainConfig,
    metrics: dict[str, Any],
    step: _Steps,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Leave each class of `held_out` out in turn (open-set metrics into `metrics`); returns the pooled
    known and unknown scores, or None when no class can be held out."""
    n_classes = len(np.unique(y))
    if folds is None or n_classes < 3 or not held_out:
        metrics |= {"auroc": None, "oscr": None, "per_holdout": {}}
        metrics["open_set_skipped"] = (
            "holding a class out needs two samples per class and two other classes to train on"
            if held_out
            else "no class to hold out"
        )
        return None
    per_holdout: dict[str, dict[str, float]] = {}
    known_pool, unknown_pool = [], []
    for i, generator in enumerate(held_out):
        step("holdout", 0.5 + 0.5 * i / len(held_out))
        known_scores, unknown_scores, known_probs, known_labels, unknown_probs = [], [], [], [], []
        for train, test in folds:
            train, known, unknown = (
                train[y[train] != generator],
                test[y[test] != generator],
                test[y[test] == generator],
            )
            model = clone(fixed).fit(X[train], y[train])
            known_scores.append(_scores(model, X[train], X[known], config.score_method))
            unknown_scores.append(_scores(model, X[train], X[unknown], config.score_method))
            known_probs.append(model.predict_proba(X[known]))
            known_labels.append(np.searchsorted(model.classes_, y[known]))
            unknown_probs.append(model.predict_proba(X[unknown]))
        known_g, unknown_g = np.concatenate(known_scores), np.concatenate(unknown_scores)
        per_holdout[generator] = {
            "auroc": m.auroc(known_g, unknown_g),
            "oscr": m.oscr(
                np.concatenate(known_probs), np.concatenate(known_labels), np.concatenate(unknown_probs)
            ),
            "n_unknown": len(unknown_g),
        }
        known_pool.append(known_g)
        unknown_pool.append(unknown_g)
    metrics |= {
        "auroc": float(np.mean([r["auroc"] for r in per_holdout.values()])),
        "oscr": float(np.mean([r["oscr"] for r in per_holdout.values()])),
        "per_holdout": per_holdout,
    }
    return np.concatenate(known_pool), np.concatenate(unknown_pool)
