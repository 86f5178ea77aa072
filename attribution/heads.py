"""Classification heads on frozen features, following scikit-learn's estimator contract.

- `LinearProbe`: L2 logistic regression (lbfgs, multinomial) with the paper's sweep of C, no feature
  scaling (as the authors' code). Prediction is plain numpy on `coef_` and `intercept_`, so a head
  rebuilt from a saved file predicts without refitting.
- `KNNHead`: cosine similarity on L2-normalised features with similarity-weighted votes.

Both answer `decision_scores(X, method)`, the open-set score of `attribution.openset`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from attribution import metrics
from attribution.openset import l2_normalize, max_cosine_similarity, nearest_neighbours, open_set_score

PAPER_C_GRID: np.ndarray = 10 ** np.linspace(-6, 5, 45)
SELECT_BY = ("auroc", "accuracy", "oscr")
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
    """Multinomial L2 logistic regression with C chosen on held-out training data.

    C sweeps `c_grid` (default: the paper's 10**linspace(-6, 5, 45)) with warm starts in increasing
    order. The selection criterion (`select_by`) cannot be the paper's AUROC against unknown generators,
    which are not available at training time, so:

    - "auroc": AUROC of the maximum softmax probability separating correctly from wrongly classified
      validation samples (misclassification detection, a proxy for rejecting what the head cannot
      place); 1.0 when every validation sample is right;
    - "oscr": OSCR with the correct samples as known and the wrong ones as unknown; 1.0 likewise;
    - "accuracy" (the default): validation accuracy. On the synthetic benchmark the two proxies above
      picked underfitted C values (validation accuracy near chance on small sets), so accuracy with
      the log-loss tie-break below is the default; the open-set threshold is calibrated separately.

    Ties (common: every C may classify a clean validation set perfectly) go to the higher accuracy,
    then to the lower validation log-loss, so that the probabilities shown to users mean something
    rather than sit near 1/K as with the smallest C, then to the smaller C.

    Validation is one stratified split of `val_fraction` when every class has at least
    max(2, 1 / val_fraction) samples, else stratified k-fold (`cv_folds` clipped to the smallest
    class) with the out-of-fold predictions pooled; a class of one sample skips the sweep (C = 1).
    The head is refit on all the data with the chosen C.
    """

    def __init__(
        self,
        c_grid: Sequence[float] | np.ndarray | None = None,
        select_by: str = "accuracy",
        val_fraction: float = 0.2,
        cv_folds: int = 3,
        max_iter: int = 1000,
        random_state: int = 0,
    ) -> None:
        self.c_grid = c_grid
        self.select_by = select_by
        self.val_fraction = val_fraction
        self.cv_folds = cv_folds
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: Sequence[Any] | np.ndarray) -> LinearProbe:
        """Select C, then fit on all of `X [N, D]` with labels `y [N]`."""
        if self.select_by not in SELECT_BY:
            raise ValueError(f"select_by must be one of {SELECT_BY}, got {self.select_by!r}")
        X, y_index = self._fit_labels(X, y)
        grid = np.sort(np.asarray(PAPER_C_GRID if self.c_grid is None else self.c_grid, dtype=np.float64))
        if grid.size == 0:
            raise ValueError("c_grid is empty")
        with limit_threads(X.size), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # large C on separable data hits max_iter
            splits = self._validation_splits(y_index) if grid.size > 1 else None
            if splits is None:
                self.selection_scores_: dict[float, float] = {}
                self.C_ = float(grid[0]) if grid.size == 1 else 1.0
            else:
                self.selection_scores_, self.C_ = self._sweep(X, y_index, grid, splits)
            model = self._logistic_regression(self.C_).fit(X, y_index)
        coef, intercept = model.coef_, model.intercept_
        if len(self.classes_) == 2:  # scikit-learn keeps one logit z for two classes: softmax([-z/2, z/2])
            coef, intercept = (
                np.vstack([-coef / 2, coef / 2]),
                np.concatenate([-intercept / 2, intercept / 2]),
            )
        self.coef_: np.ndarray = coef
        self.intercept_: np.ndarray = intercept
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits `[N, K]`, columns in the order of `classes_`."""
        return self._features(X) @ self.coef_.T + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Softmax probabilities `[N, K]`, columns in the order of `classes_`."""
        return np.asarray(softmax(self.decision_function(X), axis=1))

    def decision_scores(
        self, X: np.ndarray, method: str = "msp", *, knn_similarity: np.ndarray | None = None
    ) -> np.ndarray:
        """Open-set score `[N]` (`attribution.openset.open_set_score`); `knn` needs `knn_similarity [N]`."""
        logits = self.decision_function(X)
        return open_set_score(
            method, logits=logits, probs=softmax(logits, axis=1), knn_similarity=knn_similarity
        )

    def _logistic_regression(self, C: float, *, warm_start: bool = False) -> LogisticRegression:
        return LogisticRegression(
            C=C, max_iter=self.max_iter, warm_start=warm_start, random_state=self.random_state
        )

    def _validation_splits(self, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]] | None:
        smallest = int(np.bincount(y).min())
        if smallest < 2:
            return None
        placeholder = np.zeros((len(y), 1))
        if smallest >= max(2, math.ceil(1 / self.val_fraction)):
            split = StratifiedShuffleSplit(
                n_splits=1, test_size=self.val_fraction, random_state=self.random_state
            )
            return list(split.split(placeholder, y))
        folds = StratifiedKFold(
            n_splits=max(2, min(self.cv_folds, smallest)), shuffle=True, random_state=self.random_state
        )
        return list(folds.split(placeholder, y))

    def _sweep(
        self, X: np.ndarray, y: np.ndarray, grid: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]
    ) -> tuple[dict[float, float], float]:
        validated = np.concatenate([val for _, val in splits])
        probs = np.zeros((grid.size, len(validated), len(self.classes_)))
        offset = 0
        for train, val in splits:
            model = self._logistic_regression(float(grid[0]), warm_start=True)
            for i, C in enumerate(grid):  # increasing C, each fit starting from the last solution
                model.set_params(C=float(C)).fit(X[train], y[train])
                probs[i, offset : offset + len(val)] = model.predict_proba(X[val])
            offset += len(val)
        y_val = y[validated]
        scores: dict[float, float] = {}
        keys = []
        for i, C in enumerate(grid):
            scores[float(C)] = _selection_score(self.select_by, probs[i], y_val)
            log_loss = -np.mean(np.log(np.maximum(probs[i][np.arange(len(y_val)), y_val], 1e-300)))
            keys.append((scores[float(C)], metrics.accuracy(y_val, probs[i].argmax(axis=1)), -log_loss, -C))
        return scores, float(grid[max(range(grid.size), key=keys.__getitem__)])


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
        self, X: np.ndarray, method: str = "msp", *, knn_similarity: np.ndarray | None = None
    ) -> np.ndarray:
        """Open-set score `[N]`: `msp` is the largest vote share, `knn` the largest similarity (computed
        against the training features unless `knn_similarity [N]` is given)."""
        if method == "knn" and knn_similarity is None:
            knn_similarity = self.max_similarity(X)
        return open_set_score(method, probs=self.predict_proba(X), knn_similarity=knn_similarity)

    def _weighted_votes(self, similarities: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Per-neighbour votes `[N, k, K]`: each neighbour's similarity (floored at 0) in its class column."""
        one_hot = np.eye(len(self.classes_))[self.y_[indices]]
        return one_hot * np.maximum(similarities, 0.0)[..., None]


def _selection_score(select_by: str, probs: np.ndarray, y: np.ndarray) -> float:
    """Score of validation probabilities `[N, K]` against true column indices `y [N]` (see LinearProbe)."""
    correct = probs.argmax(axis=1) == y
    if select_by == "accuracy":
        return float(correct.mean())
    if correct.all() or not correct.any():
        return float(correct.all())  # nothing to separate: perfect when all right, worthless when all wrong
    if select_by == "auroc":
        msp = probs.max(axis=1)
        return metrics.auroc(msp[correct], msp[~correct])
    return metrics.oscr(probs[correct], y[correct], probs[~correct])
