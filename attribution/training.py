"""Train a head on reference features and measure it the way it will be used: closed-set accuracy by
stratified cross-validation, open-set rejection by holding out each known generator in turn.

Training-only: inference (`attribution.predict`, `attribution.artifact`) never imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.special import softmax
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

from attribution import metrics as m
from attribution.heads import KNNHead, LinearProbe, limit_threads
from attribution.logistic import fit_multinomial
from attribution.openset import (
    GAUSSIAN_METHODS,
    SCORE_METHODS,
    GaussianScorer,
    calibrate_threshold,
    max_cosine_similarity,
    open_set_score,
)

Progress = Callable[[str, float], None]
ShouldStop = Callable[[], bool]
Folds = list[tuple[np.ndarray, np.ndarray]]


class TrainingCancelled(Exception):
    """`should_stop()` answered True between two training steps."""


AUTO = "auto"
# What `score_method="auto"` compares, in order of preference on a tie. `msp` ranks as `log_msp` except
# that it ties at 1.0; logit scores do not apply to a kNN head.
LINEAR_CANDIDATES: tuple[str, ...] = (
    "log_msp",
    "msp",
    "max_logit",
    "energy",
    "knn",
    "mahalanobis",
    "relative_mahalanobis",
)
KNN_CANDIDATES: tuple[str, ...] = ("msp", "knn", "mahalanobis", "relative_mahalanobis")


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    `head="auto"` takes the linear probe when every class has at least `min_per_class_linear` samples,
    else kNN. The probe's C sweeps `c_grid` (None: the paper's 45 values) and is chosen by `select_by`
    (`"logo"`: held-out-generator AUROC, `"accuracy"`; see `LinearProbe`), with `class_weight`.
    `score_method="auto"` measures every candidate open-set score on the held-out generators and keeps
    the best by OSCR; a name pins it. The threshold accepts `tpr` of the deployed (K-class) head's
    out-of-fold scores of known images. Held-out runs leave out every class but `real_label` unless
    `hold_out_real`."""

    head: Literal["auto", "linear", "knn"] = "auto"
    min_per_class_linear: int = 5
    c_grid: Sequence[float] | None = None
    cv_folds: int = 5
    tpr: float = 0.95
    score_method: str = AUTO
    random_state: int = 0
    real_label: str = "real"
    hold_out_real: bool = False
    select_by: str = "logo"
    class_weight: str | None = "balanced"
    val_fraction: float = 0.2


@dataclass
class TrainResult:
    """The head fitted on all the data, its cross-validated metrics, its open-set score (`score_method`,
    chosen or pinned; `gaussian` holds the class Gaussians a Mahalanobis score needs) and its threshold."""

    estimator: LinearProbe | KNNHead
    metrics: dict[str, Any]
    threshold: float
    head_kind: str  # "linear" or "knn"
    score_method: str = "msp"
    gaussian: GaussianScorer | None = None

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """What was chosen for the head (C or k, the score) and how, for the head's provenance."""
        common = {"score_method": self.score_method, "score_selection": self.metrics.get("score_selection")}
        if isinstance(self.estimator, LinearProbe):
            selection = getattr(self.estimator, "selection_", {})
            return {
                "head": "linear",
                "C": self.estimator.C_,
                "select_by": self.estimator.select_by,
                "criterion_used": selection.get("criterion_used", self.estimator.select_by),
                "selection_metric": selection.get("metric"),
                "class_weight": self.estimator.class_weight,
                "tol": self.estimator.tol,
                "converged": bool(getattr(self.estimator, "converged_", True)),
            } | common
        return {"head": "knn", "k": self.estimator.k_} | common


def train_head(
    features: np.ndarray,
    labels: Sequence[str],
    *,
    sample_ids: Sequence[str] | None = None,
    config: TrainConfig = TrainConfig(),
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    unknown_features: np.ndarray | None = None,
) -> TrainResult:
    """Fit a head on `features [N, D]` with `labels [N]`, choose its open-set score, calibrate its threshold.

    Steps (each reported as `progress(step, fraction_done)`; `should_stop()` is asked before each, and
    before each held-out class, raising `TrainingCancelled`):

    1. "fit": the head on all the data, with C (or k) selected on the data (`config.select_by`;
       `unknown_features [M, D]` are the held-out generators `select_by="paper"` needs); the runs below
       reuse that value rather than sweep again (fast; slightly optimistic).
    2. "cross_validation": stratified K-fold (K = min(cv_folds, smallest class), at least 2): accuracy,
       macro F1, per-class recall, confusion matrix from out-of-fold predictions of K-class heads, and
       their out-of-fold open-set scores. Skipped (metrics None, with a reason) when a class has a single
       sample.
    3. "holdout": for each held-out class g, on the same folds, a head trained without g scores the fold's
       other samples (known) and g's samples (unknown), with every candidate score: AUROC and OSCR per
       class and their means (`score_comparison`); `score_method="auto"` keeps the best mean OSCR.
    4. The threshold accepts `tpr` of the out-of-fold scores of known images under the K-class heads, the
       head that will be deployed (`threshold_source` "out_of_fold"); without folds, the training
       scores ("training"). `known_acceptance_at_threshold` is the accepted share of those out-of-fold
       scores, `unknown_rejection_at_threshold` the rejected share of the held-out generators' scores
       (under their K-1-class heads).
    """
    if config.score_method != AUTO and config.score_method not in SCORE_METHODS:
        raise ValueError(f"unknown score method {config.score_method!r}; expected auto or one of {SCORE_METHODS}")
    if config.head not in ("auto", "linear", "knn"):
        raise ValueError(f"unknown head {config.head!r}; expected auto, linear or knn")
    X = np.asarray(features, dtype=np.float64)
    y = np.asarray([str(label) for label in labels])
    if X.ndim != 2 or len(X) != len(y) or (sample_ids is not None and len(sample_ids) != len(y)):
        raise ValueError(f"features {X.shape}, {len(y)} labels and sample ids must describe the same samples")
    if len(np.unique(y)) < 2:
        raise ValueError(f"training needs at least 2 classes, got {np.unique(y).tolist()}")
    with limit_threads(X.size):
        return _train(X, y, sample_ids, config, _Steps(progress, should_stop), unknown_features)


def _train(
    X: np.ndarray,
    y: np.ndarray,
    sample_ids: Sequence[str] | None,
    config: TrainConfig,
    step: _Steps,
    unknown_features: np.ndarray | None,
) -> TrainResult:
    classes, y_index, counts = np.unique(y, return_inverse=True, return_counts=True)
    step("fit", 0.0)
    kind = config.head
    if kind == "auto":
        kind = "linear" if counts.min() >= config.min_per_class_linear else "knn"
    estimator: LinearProbe | KNNHead
    if kind == "linear":
        estimator = LinearProbe(
            c_grid=config.c_grid,
            select_by=config.select_by,
            class_weight=config.class_weight,
            val_fraction=config.val_fraction,
            real_label=config.real_label,
            hold_out_real=config.hold_out_real,
            random_state=config.random_state,
        ).fit(X, y, unknown=unknown_features)
        candidates = LINEAR_CANDIDATES
    else:
        estimator = KNNHead(random_state=config.random_state).fit(X, y)
        candidates = KNN_CANDIDATES
    methods = list(candidates) if config.score_method == AUTO else [config.score_method]
    metrics: dict[str, Any] = {
        "head": kind,
        "n_samples": len(y),
        "class_counts": dict(zip(classes.tolist(), counts.tolist(), strict=True)),
        "threshold_tpr": config.tpr,
        "score_selection": "auto" if config.score_method == AUTO else "pinned",
    }
    if isinstance(estimator, LinearProbe):
        metrics |= {"C": estimator.C_, "select_by": config.select_by, "selection": estimator.selection_}
    else:
        metrics["k"] = estimator.k_

    step("cross_validation", 0.3)
    folds = _folds(y, config) if counts.min() >= 2 else None
    held_out = [g for g in classes.tolist() if config.hold_out_real or g != config.real_label]
    can_hold_out = folds is not None and len(classes) >= 3 and bool(held_out)
    runs = _Runs(
        X, y_index, len(classes), estimator, folds or [], held_out_index(classes, held_out) if can_hold_out else []
    )
    oof: dict[str, np.ndarray] | None = None
    if folds is None:
        metrics |= dict.fromkeys(["accuracy", "macro_f1", "per_class_recall", "confusion", "cv_folds"])
        metrics["closed_set_skipped"] = "a class has a single sample: cross-validation needs two per class"
    else:
        oof = _cross_validate(runs, y, classes, sample_ids, methods, metrics)

    comparison = None
    if can_hold_out:
        comparison = _hold_out(runs, classes, methods, step)
    else:
        metrics |= {"auroc": None, "oscr": None, "per_holdout": {}}
        metrics["open_set_skipped"] = (
            "holding a class out needs two samples per class and two other classes to train on"
            if held_out
            else "no class to hold out"
        )

    if comparison is not None and len(methods) > 1:
        order = {name: i for i, name in enumerate(methods)}
        method = max(methods, key=lambda name: (comparison[name]["oscr"], comparison[name]["auroc"], -order[name]))
    else:
        method = methods[0] if config.score_method != AUTO else candidates[0]
    metrics["score_method"] = method

    gaussian = None
    if method in GAUSSIAN_METHODS:
        gaussian = GaussianScorer.fit(X, y_index, len(classes))
    if oof is not None:
        known = oof[method]
        threshold, source = calibrate_threshold(known, config.tpr), "out_of_fold"
    else:
        known = _scores(estimator, X, X, method, gaussian)
        threshold, source = calibrate_threshold(known, config.tpr), "training"
    metrics["threshold_source"] = source
    metrics["known_acceptance_at_threshold"] = float(np.mean(known >= threshold))
    if comparison is not None:
        chosen = comparison[method]
        metrics |= {"auroc": chosen["auroc"], "oscr": chosen["oscr"], "per_holdout": chosen["per_holdout"]}
        unknown_pool = np.concatenate(chosen["unknown_scores"])
        metrics["unknown_rejection_at_threshold"] = float(np.mean(unknown_pool < threshold))
        metrics["score_comparison"] = {
            name: {"auroc": row["auroc"], "oscr": row["oscr"]}
            | ({"unknown_rejection_at_own_threshold": row["rejection"]} if "rejection" in row else {})
            for name, row in comparison.items()
        }
    else:
        metrics["unknown_rejection_at_threshold"] = None
        metrics["score_comparison"] = None
    step("done", 1.0)
    return TrainResult(
        estimator=estimator,
        metrics=metrics,
        threshold=threshold,
        head_kind=kind,
        score_method=method,
        gaussian=gaussian,
    )


def held_out_index(classes: np.ndarray, held_out: list[str]) -> list[int]:
    """Column indices of the held-out class names."""
    return [int(np.searchsorted(classes, g)) for g in held_out]


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


class _Runs:
    """The fits of the measurement: one K-class head per fold, then one per (held-out class, fold), each
    trained with the chosen C (or k). A linear probe's fits run together in one solver call
    (`fit_multinomial`, the probe's own objective and class weights); kNN heads are fitted one by one."""

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        n_classes: int,
        estimator: LinearProbe | KNNHead,
        folds: Folds,
        held_out: list[int],
    ) -> None:
        self.X, self.y, self.K, self.folds, self.held_out = X, y, n_classes, folds, held_out
        self.estimator = estimator
        self.layout = [(f, -1) for f in range(len(folds))] + [(f, g) for g in held_out for f in range(len(folds))]
        self.train_rows = [folds[f][0] if g < 0 else folds[f][0][y[folds[f][0]] != g] for f, g in self.layout]
        self._logits: np.ndarray | None = None
        self._gaussians: dict[int, dict[int, GaussianScorer]] = {}

    def logits_or_probs(self, q: int, rows: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(logits or None, probabilities) `[len(rows), K]` of fit q on `rows`; an absent class has probability 0."""
        if isinstance(self.estimator, LinearProbe):
            if self._logits is None:
                masks = np.zeros((len(self.layout), len(self.y)), dtype=bool)
                for i, rows_i in enumerate(self.train_rows):
                    masks[i, rows_i] = True
                fits = fit_multinomial(
                    self.X,
                    self.y,
                    masks,
                    C=self.estimator.C_,
                    n_classes=self.K,
                    class_weight=self.estimator.class_weight,
                    tol=self.estimator.tol,
                    max_iter=self.estimator.max_iter,
                )
                self._logits = fits.logits(self.X)
            z = self._logits[q, rows]
            return z, np.asarray(softmax(z, axis=1))
        model = clone(self.estimator).set_params(k_grid=[self.estimator.k_])
        train = self.train_rows[q]
        model.fit(self.X[train], self.y[train])
        probs = np.zeros((len(rows), self.K))
        probs[:, model.classes_.astype(np.int64)] = model.predict_proba(self.X[rows])
        return None, probs

    def _gaussian(self, q: int) -> GaussianScorer:
        """Fit q's class Gaussians; those of one fold's held-out runs are computed together."""
        f, g = self.layout[q]
        if g < 0:
            train = self.train_rows[q]
            return GaussianScorer.fit(self.X[train], self.y[train], self.K)
        if f not in self._gaussians:
            train = self.folds[f][0]
            fitted = GaussianScorer.fit_leaving_out(self.X[train], self.y[train], self.K, self.held_out)
            self._gaussians[f] = dict(zip(self.held_out, fitted, strict=True))
        return self._gaussians[f][g]

    def scores(self, q: int, rows: np.ndarray, methods: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Every method's open-set scores `[len(rows)]` under fit q, and its predicted class indices."""
        logits, probs = self.logits_or_probs(q, rows)
        train = self.train_rows[q]
        out: dict[str, np.ndarray] = {}
        similarity = max_cosine_similarity(self.X[rows], self.X[train]) if "knn" in methods else None
        gaussian = self._gaussian(q) if any(name in GAUSSIAN_METHODS for name in methods) else None
        for name in methods:
            distances = (
                gaussian.scores_for(name, self.X[rows]) if gaussian is not None and name in GAUSSIAN_METHODS else None
            )
            out[name] = open_set_score(
                name, logits=logits, probs=probs, knn_similarity=similarity, gaussian_distances=distances
            )
        return out, probs.argmax(axis=1)


def _scores(
    model: LinearProbe | KNNHead, X_train: np.ndarray, X_test: np.ndarray, method: str, gaussian: GaussianScorer | None
) -> np.ndarray:
    """Open-set scores `[N]` of `X_test`; `knn` measures similarity to the model's training features."""
    knn_similarity = max_cosine_similarity(X_test, X_train) if method == "knn" else None
    return model.decision_scores(X_test, method, knn_similarity=knn_similarity, gaussian=gaussian)


def _cross_validate(
    runs: _Runs,
    y: np.ndarray,
    classes: np.ndarray,
    sample_ids: Sequence[str] | None,
    methods: Sequence[str],
    metrics: dict[str, Any],
) -> dict[str, np.ndarray]:
    """Closed-set metrics from out-of-fold predictions of the K-class heads (into `metrics`); returns the
    out-of-fold scores `{method: [N]}`."""
    predicted = np.empty_like(y)
    scores = {name: np.empty(len(y)) for name in methods}
    for q, (_, test) in enumerate(runs.folds):
        fold_scores, predicted_index = runs.scores(q, test, methods)
        predicted[test] = classes[predicted_index]
        for name in methods:
            scores[name][test] = fold_scores[name]
    labels = classes.tolist()
    metrics |= {
        "cv_folds": len(runs.folds),
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


def _hold_out(runs: _Runs, classes: np.ndarray, methods: Sequence[str], step: _Steps) -> dict[str, dict[str, Any]]:
    """Leave each held-out class out in turn; for each method: mean AUROC and OSCR over the held-out
    classes, the per-class figures and the unknown scores."""
    y = runs.y
    n_folds = len(runs.folds)
    per: dict[str, dict[str, Any]] = {name: {"per_holdout": {}, "unknown_scores": []} for name in methods}
    for i, g in enumerate(runs.held_out):
        step("holdout", 0.5 + 0.5 * i / len(runs.held_out))
        known: dict[str, list[np.ndarray]] = {name: [] for name in methods}
        unknown: dict[str, list[np.ndarray]] = {name: [] for name in methods}
        correct: list[np.ndarray] = []
        for f, (_, test) in enumerate(runs.folds):
            q = n_folds * (i + 1) + f
            scores, predicted = runs.scores(q, test, methods)
            is_known = y[test] != g
            correct.append(predicted[is_known] == y[test][is_known])
            for name in methods:
                known[name].append(scores[name][is_known])
                unknown[name].append(scores[name][~is_known])
        is_correct = np.concatenate(correct)
        for name in methods:
            known_g, unknown_g = np.concatenate(known[name]), np.concatenate(unknown[name])
            per[name]["per_holdout"][str(classes[g])] = {
                "auroc": m.auroc(known_g, unknown_g),
                "oscr": m.oscr_scores(known_g, is_correct, unknown_g),
                "n_unknown": len(unknown_g),
            }
            per[name]["unknown_scores"].append(unknown_g)
    for row in per.values():
        runs_g = row["per_holdout"].values()
        row["auroc"] = float(np.mean([r["auroc"] for r in runs_g]))
        row["oscr"] = float(np.mean([r["oscr"] for r in runs_g]))
    return per
