"""Classification heads on frozen features, following scikit-learn's estimator contract.

- `LinearProbe`: L2 logistic regression (lbfgs, multinomial) with the paper's sweep of C, no feature
  scaling (as the authors' code). Prediction is plain numpy on `coef_` and `intercept_`, so a head
  rebuilt from a saved file predicts without refitting.
- `KNNHead`: cosine similarity on L2-normalised features with similarity-weighted votes.

Both answer `decision_scores(X, method)`, the open-set score of `attribution.openset`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy.special import logsumexp, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from attribution import metrics
from attribution.logistic import DEFAULT_MAX_ITER, DEFAULT_TOL, MultinomialFits, fit_multinomial
from attribution.openset import (
    GAUSSIAN_METHODS,
    GaussianScorer,
    l2_normalize,
    max_cosine_similarity,
    nearest_neighbours,
    open_set_score,
)

PAPER_C_GRID: np.ndarray = 10 ** np.linspace(-6, 5, 45)
_PATIENCE = 2  # coarse C values in a row at which the criterion falls before the sweep stops
# ... by more than this below the best so far: small wobbles on the flat, underfitted end of the grid
# (validation figures at chance for every C below 1e-3 on the synthetic benchmark) must not stop it.
_FALL = 0.02
SELECT_BY = ("logo", "accuracy", "paper")
# Below this many feature values a fit takes milliseconds, and waking BLAS/OpenMP threads for every
# small product costs more than it saves (measured on 2 busy cores at 500 x 384: lbfgs 5x slower,
# kNN 4x slower with 2 threads than with 1).
_SINGLE_THREAD_SIZE = 1 << 21


def limit_threads(size: int) -> threadpool_limits:
    """A context that runs BLAS and OpenMP on one thread when a problem has at most `size` values
    below `_SINGLE_THREAD_SIZE`, and leaves them alone otherwise."""
    return threadpool_limits(1 if size <= _SINGLE_THREAD_SIZE else None)


class _Head(ClassifierMixin, BaseEstimator):
    """What both heads share: labels from `predict_proba`, and open-set scores."""

    classes_: np.ndarray

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most probable class `[N]` (values of `classes_`) for features `X [N, D]`."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def _fit_labels(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes, got {len(self.classes_)}")
        return X, y_index

    def _features(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "classes_")
        return np.asarray(validate_data(self, X, dtype=np.float64, reset=False))


class LinearProbe(_Head):
    """Multinomial L2 logistic regression with C chosen on held-out training data, solved to convergence
    (`attribution.logistic.fit_multinomial`: scikit-learn's objective, no feature scaling as in the
    authors' code, a projected gradient below `tol` or a `ConvergenceWarning`).

    C sweeps `c_grid` (default: the paper's 10**linspace(-6, 5, 45)); `select_by` says how it is chosen:

    - "logo" (the default): leave one generator out. On a validation split of the training data, for
      each C and each class g but `real_label` (unless `hold_out_real`), a head fitted without g scores
      the validation images of the other classes (known) against g's (unknown) with the log maximum
      softmax probability; the C with the best mean over g of `logo_metric` wins: "oscr" (default), or
      "auroc" (both are recorded). The paper chooses C by the AUROC of the MSP against generators held
      out of training; this is that protocol with the only held-out generators a training job has: its
      own, in turn. OSCR rather than AUROC by default because OSCR also counts the known images the head
      gets wrong: on small reference sets (synthetic benchmark, 10 training images per class) AUROC
      alone chose C values whose closed-set accuracy was at chance (0.2 against 0.4 at the best C).
      Where every known image is classified right the two agree. Needs 3 classes or more, else
      "accuracy" (recorded in `selection_["fallback"]`).
    - "paper": the paper's exact criterion: AUROC of the MSP (its log, without ties) of the known
      validation images against `unknown` features passed to `fit` (images of generators kept out of
      training).
    - "accuracy": validation accuracy (the head's default before leave-one-generator-out selection).

    Ties go to the higher validation accuracy, then the lower validation log-loss, then the smaller C.
    With `coarse_to_fine`, every 4th C of a grid longer than 12 is tried first, in increasing order and
    stopping once the criterion has fallen 0.02 below its best at two of them in a row (past its peak,
    where the larger C values cost the most solver steps), then the C values between the best one's
    coarse neighbours:
    10 to 18 of the paper's 45 values, each fit warm-started from the previous C; the solver converges,
    so warm starts change the time, not the head. A shorter grid (5 to 12 values) is tried in full but
    for the same early stop. `coarse_to_fine=False` tries every C.

    Validation is one stratified split of `val_fraction` when every class has at least
    max(2, 1 / val_fraction) samples, else stratified k-fold (`cv_folds` clipped to the smallest
    class) with the out-of-fold predictions pooled; a class of one sample skips the sweep (C = 1).
    `class_weight="balanced"` weighs each class's samples to the same total, in every fit. The head is
    refit on all the data with the chosen C, by the same solver.
    """

    def __init__(
        self,
        c_grid: Sequence[float] | np.ndarray | None = None,
        select_by: str = "logo",
        class_weight: str | None = "balanced",
        val_fraction: float = 0.2,
        cv_folds: int = 3,
        max_iter: int = DEFAULT_MAX_ITER,
        tol: float = DEFAULT_TOL,
        real_label: str = "real",
        hold_out_real: bool = False,
        logo_metric: str = "oscr",
        coarse_to_fine: bool = True,
        random_state: int = 0,
    ) -> None:
        self.c_grid = c_grid
        self.select_by = select_by
        self.class_weight = class_weight
        self.val_fraction = val_fraction
        self.cv_folds = cv_folds
        self.max_iter = max_iter
        self.tol = tol
        self.real_label = real_label
        self.hold_out_real = hold_out_real
        self.logo_metric = logo_metric
        self.coarse_to_fine = coarse_to_fine
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: Sequence[Any] | np.ndarray, unknown: np.ndarray | None = None) -> LinearProbe:
        """Select C, then fit on all of `X [N, D]` with labels `y [N]`; `unknown [M, D]`: features of
        generators kept out of training, for `select_by="paper"` only."""
        if self.select_by not in SELECT_BY:
            raise ValueError(f"select_by must be one of {SELECT_BY}, got {self.select_by!r}")
        if self.select_by == "paper" and unknown is None:
            raise ValueError('select_by="paper" needs the features of held-out generators: fit(X, y, unknown=...)')
        X, y_index = self._fit_labels(X, y)
        grid = np.sort(np.asarray(PAPER_C_GRID if self.c_grid is None else self.c_grid, dtype=np.float64))
        if grid.size == 0:
            raise ValueError("c_grid is empty")
        self.selection_: dict[str, Any] = {"criterion": self.select_by}
        self.selection_scores_: dict[float, float] = {}
        splits = self._validation_splits(y_index) if grid.size > 1 else None
        if splits is None:
            self.C_ = float(grid[0]) if grid.size == 1 else 1.0
            if grid.size > 1:
                self.selection_["fallback"] = "a class has a single sample: C = 1 without a sweep"
        else:
            U = None if unknown is None else np.asarray(validate_data(self, unknown, dtype=np.float64, reset=False))
            self.C_ = self._sweep(X, y_index, grid, splits, U)
        full = np.ones((1, len(y_index)), dtype=bool)
        fits = fit_multinomial(
            X,
            y_index,
            full,
            C=self.C_,
            n_classes=len(self.classes_),
            class_weight=self.class_weight,
            tol=self.tol,
            max_iter=self.max_iter,
        )
        self.coef_: np.ndarray = fits.coef[0].T  # [K, D], as scikit-learn's
        self.intercept_: np.ndarray = fits.intercept[0]
        self.converged_: bool = fits.converged
        self.n_iter_: int = fits.n_iter
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits `[N, K]`, columns in the order of `classes_`."""
        return self._features(X) @ self.coef_.T + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Softmax probabilities `[N, K]`, columns in the order of `classes_`."""
        return np.asarray(softmax(self.decision_function(X), axis=1))

    def decision_scores(
        self,
        X: np.ndarray,
        method: str = "msp",
        *,
        knn_similarity: np.ndarray | None = None,
        gaussian: GaussianScorer | None = None,
    ) -> np.ndarray:
        """Open-set score `[N]` (`attribution.openset.open_set_score`); `knn` needs `knn_similarity [N]`,
        `mahalanobis` and `relative_mahalanobis` a fitted `gaussian` scorer."""
        logits = self.decision_function(X)
        return open_set_score(
            method,
            logits=logits,
            probs=softmax(logits, axis=1),
            knn_similarity=knn_similarity,
            gaussian_distances=_gaussian_scores(method, gaussian, X),
        )

    def _validation_splits(self, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]] | None:
        smallest = int(np.bincount(y).min())
        if smallest < 2:
            return None
        placeholder = np.zeros((len(y), 1))
        if smallest >= max(2, math.ceil(1 / self.val_fraction)):
            split = StratifiedShuffleSplit(n_splits=1, test_size=self.val_fraction, random_state=self.random_state)
            return list(split.split(placeholder, y))
        folds = StratifiedKFold(
            n_splits=max(2, min(self.cv_folds, smallest)), shuffle=True, random_state=self.random_state
        )
        return list(folds.split(placeholder, y))

    def _sweep(
        self,
        X: np.ndarray,
        y: np.ndarray,
        grid: np.ndarray,
        splits: list[tuple[np.ndarray, np.ndarray]],
        unknown: np.ndarray | None,
    ) -> float:
        """Try the C values (coarse to fine), record each one's validation figures, return the chosen C."""
        K = len(self.classes_)
        criterion = self.select_by
        held_out = [k for k in range(K) if self.hold_out_real or str(self.classes_[k]) != str(self.real_label)]
        if criterion == "logo" and (K < 3 or not held_out):
            criterion = "accuracy"
            self.selection_["fallback"] = "leaving a generator out needs 3 classes (2 left to train on): accuracy"
        if criterion != "logo":
            held_out = []
        n = len(y)
        masks, layout = [], []  # layout: (split, held-out class index or -1 for the full fit)
        for s, (train, _) in enumerate(splits):
            in_train = np.zeros(n, dtype=bool)
            in_train[train] = True
            masks.append(in_train)
            layout.append((s, -1))
            for g in held_out:
                masks.append(in_train & (y != g))
                layout.append((s, g))
        mask_array = np.stack(masks)
        validated = np.concatenate([val for _, val in splits])
        y_val = y[validated]

        def figures(C: float, init: MultinomialFits | None) -> tuple[dict[str, float], MultinomialFits]:
            fits = fit_multinomial(
                X,
                y,
                mask_array,
                C=C,
                n_classes=K,
                class_weight=self.class_weight,
                tol=self.tol,
                max_iter=self.max_iter,
                init=init,
            )
            logits = fits.logits(X)  # [Q, N, K]
            full_logits = np.concatenate([logits[q, splits[s][1]] for q, (s, g) in enumerate(layout) if g < 0])
            log_p = full_logits - logsumexp(full_logits, axis=1, keepdims=True)
            out = {
                "accuracy": metrics.accuracy(y_val, full_logits.argmax(axis=1)),
                "log_loss": float(-np.mean(log_p[np.arange(len(y_val)), y_val])),
            }
            if criterion == "paper":
                assert unknown is not None
                known_scores = open_set_score("log_msp", logits=full_logits)
                unknown_logits = fits.logits(unknown)
                unknown_scores = np.concatenate(
                    [open_set_score("log_msp", logits=unknown_logits[q]) for q, (_, g) in enumerate(layout) if g < 0]
                )
                out["auroc"] = metrics.auroc(known_scores, unknown_scores)
                out["oscr"] = metrics.oscr_scores(known_scores, full_logits.argmax(axis=1) == y_val, unknown_scores)
            elif criterion == "logo":
                aurocs, oscrs = [], []
                for g in held_out:
                    known_s, correct, unknown_s = [], [], []
                    for q, (s, h) in enumerate(layout):
                        if h != g:
                            continue
                        val = splits[s][1]
                        z = logits[q, val]
                        score = open_set_score("log_msp", logits=z)
                        is_known = y[val] != g
                        known_s.append(score[is_known])
                        correct.append(z[is_known].argmax(axis=1) == y[val][is_known])
                        unknown_s.append(score[~is_known])
                    ks, us = np.concatenate(known_s), np.concatenate(unknown_s)
                    aurocs.append(metrics.auroc(ks, us))
                    oscrs.append(metrics.oscr_scores(ks, np.concatenate(correct), us))
                out["auroc"], out["oscr"] = float(np.mean(aurocs)), float(np.mean(oscrs))
            out["converged"] = float(fits.converged)
            return out, fits

        primary = {"accuracy": "accuracy", "paper": "auroc"}.get(criterion, self.logo_metric)
        table: dict[float, dict[str, float]] = {}
        step = 4 if self.coarse_to_fine and grid.size > 12 else 1
        stop_early = self.coarse_to_fine and grid.size >= 5
        coarse = sorted(set(range(0, grid.size, step)) | {grid.size - 1})
        fine: list[int] = []
        for stage in (coarse, fine):
            init, falls, best_so_far = None, 0, -np.inf
            for i in stage:
                if float(grid[i]) in table:
                    continue
                row, init = figures(float(grid[i]), init)
                table[float(grid[i])] = row
                if stage is coarse and stop_early:  # past a peak the larger C values only cost time
                    falls = falls + 1 if row[primary] < best_so_far - _FALL else 0
                    best_so_far = max(best_so_far, row[primary])
                    if falls >= _PATIENCE:
                        break
            if stage is coarse and step > 1:
                best = int(np.searchsorted(grid, self._best(table, primary)))
                fine.extend(range(max(0, best - step + 1), min(grid.size, best + step)))
        C = self._best(table, primary)
        self.selection_scores_ = {c: row[primary] for c, row in sorted(table.items())}
        self.selection_ |= {
            "criterion_used": criterion,
            "metric": primary,
            "score": "log_msp" if primary != "accuracy" else None,
            "held_out": [str(self.classes_[g]) for g in held_out],
            "n_evaluated": len(table),
            "table": {f"{c:.6g}": row for c, row in sorted(table.items())},
            "chosen": {"C": C} | table[C],
        }
        return C

    @staticmethod
    def _best(table: dict[float, dict[str, float]], primary: str) -> float:
        return max(table, key=lambda c: (table[c][primary], table[c]["accuracy"], -table[c]["log_loss"], -c))


class KNNHead(_Head):
    """k nearest neighbours by cosine similarity with similarity-weighted votes.

    `predict_proba` gives the vote shares (negative similarities vote zero; a row with no positive
    weight is uniform); the paper's kNN open-set score is the largest share. k is chosen by
    leave-one-out accuracy on the training set over `k_grid` (clipped to N - 1); ties go to the larger
    k, whose vote shares say more than the all-or-nothing vote of k = 1.
    """

    def __init__(self, k_grid: Iterable[int] = range(1, 21), random_state: int = 0) -> None:
        self.k_grid = k_grid
        self.random_state = random_state  # unused (the head is deterministic); kept for a uniform API

    def fit(self, X: np.ndarray, y: Sequence[Any] | np.ndarray) -> KNNHead:
        """Store L2-normalised `X [N, D]` and labels `y [N]`, and choose k by leave-one-out accuracy."""
        X, y_index = self._fit_labels(X, y)
        self.X_: np.ndarray = l2_normalize(X)
        self.y_: np.ndarray = y_index.astype(np.int64)
        grid = sorted({min(int(k), len(y_index) - 1) for k in self.k_grid})
        if not grid or grid[0] < 1:
            raise ValueError(f"k_grid must hold positive integers, got {list(self.k_grid)}")
        with limit_threads(X.size):
            similarities, indices = nearest_neighbours(self.X_, self.X_, grid[-1], exclude_self=True)
        votes = np.cumsum(self._weighted_votes(similarities, indices), axis=1)  # [N, k_max, K]
        accuracies = [metrics.accuracy(y_index, votes[:, k - 1].argmax(axis=1)) for k in grid]
        self.k_: int = max(zip(accuracies, grid, strict=True))[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Similarity-weighted vote shares of the `k_` nearest training samples `[N, K]`."""
        similarities, indices = nearest_neighbours(self._features(X), self.X_, self.k_)
        votes = self._weighted_votes(similarities, indices).sum(axis=1)
        totals = votes.sum(axis=1, keepdims=True)
        return np.where(totals > 0, votes / np.where(totals > 0, totals, 1.0), 1.0 / len(self.classes_))

    def max_similarity(self, X: np.ndarray) -> np.ndarray:
        """Largest cosine similarity `[N]` of each row of `X [N, D]` to the training features."""
        return max_cosine_similarity(self._features(X), self.X_)

    def decision_scores(
        self,
        X: np.ndarray,
        method: str = "msp",
        *,
        knn_similarity: np.ndarray | None = None,
        gaussian: GaussianScorer | None = None,
    ) -> np.ndarray:
        """Open-set score `[N]`: `msp` is the largest vote share (`log_msp` its log), `knn` the largest
        similarity (computed against the training features unless `knn_similarity [N]` is given); the
        Mahalanobis scores need a fitted `gaussian` scorer. Logit scores do not apply to kNN."""
        if method == "knn" and knn_similarity is None:
            knn_similarity = self.max_similarity(X)
        return open_set_score(
            method,
            probs=self.predict_proba(X),
            knn_similarity=knn_similarity,
            gaussian_distances=_gaussian_scores(method, gaussian, X),
        )

    def _weighted_votes(self, similarities: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Per-neighbour votes `[N, k, K]`: each neighbour's similarity (floored at 0) in its class column."""
        one_hot = np.eye(len(self.classes_))[self.y_[indices]]
        return one_hot * np.maximum(similarities, 0.0)[..., None]


def _gaussian_scores(method: str, gaussian: GaussianScorer | None, X: np.ndarray) -> np.ndarray | None:
    """The Mahalanobis score `[N]` of `X` when `method` is one, else None."""
    if method not in GAUSSIAN_METHODS:
        return None
    if gaussian is None:
        raise ValueError(f"the {method!r} open-set score needs the head's fitted GaussianScorer")
    return gaussian.scores_for(method, X)
