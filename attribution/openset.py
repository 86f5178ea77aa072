"""Open-set scores (higher = more likely a known source), their threshold, and cosine neighbours.

Numpy only: the same code scores images at inference time and held-out generators during training.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from scipy.special import logsumexp, softmax

ScoreMethod = Literal["msp", "log_msp", "max_logit", "energy", "knn", "mahalanobis", "relative_mahalanobis"]
SCORE_METHODS: tuple[str, ...] = get_args(ScoreMethod)
# Scores that need the class-conditional Gaussians of `GaussianScorer`.
GAUSSIAN_METHODS: tuple[str, ...] = ("mahalanobis", "relative_mahalanobis")
# How a head joins several blocks' features: raw concatenation, or each block L2-normalised first.
FEATURE_JOINS: tuple[str, ...] = ("concat", "l2")
_CHUNK = 1024  # query rows per similarity block: bounds memory at _CHUNK x len(reference)


def open_set_score(
    method: str,
    *,
    logits: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    knn_similarity: np.ndarray | None = None,
    gaussian_distances: np.ndarray | None = None,
) -> np.ndarray:
    """Open-set score `[N]`, higher meaning more likely known.

    - `msp`: maximum softmax probability of `probs [N, K]` (or of `softmax(logits)`), the paper's score;
    - `log_msp`: its logarithm, `max(logits) - logsumexp(logits)`: the same ranking without the ties of
      MSP rounding to 1.0 in float64 (from `probs` alone: `log(max(probs))`);
    - `max_logit`: maximum of `logits [N, K]`;
    - `energy`: `logsumexp(logits)` over classes (temperature 1), the negative free energy;
    - `knn`: `knn_similarity [N]`, the largest cosine similarity to the training features;
    - `mahalanobis`, `relative_mahalanobis`: `gaussian_distances [N]` from `GaussianScorer.score`
      (already signed: higher = nearer a known class).
    """
    if method == "log_msp":
        if logits is not None:
            return log_msp(logits)
        with np.errstate(divide="ignore"):
            return np.log(np.asarray(_needed(probs, method, "logits or probs"), dtype=np.float64).max(axis=1))
    if method in GAUSSIAN_METHODS:
        return np.asarray(_needed(gaussian_distances, method, "gaussian_distances"), dtype=np.float64).ravel()
    if method == "msp":
        if probs is None:
            probs = None if logits is None else softmax(np.asarray(logits, dtype=np.float64), axis=1)
        return np.asarray(_needed(probs, method, "probs or logits")).max(axis=1)
    if method == "max_logit":
        return np.asarray(_needed(logits, method, "logits"), dtype=np.float64).max(axis=1)
    if method == "energy":
        return np.asarray(logsumexp(np.asarray(_needed(logits, method, "logits"), dtype=np.float64), axis=1))
    if method == "knn":
        return np.asarray(_needed(knn_similarity, method, "knn_similarity"), dtype=np.float64).ravel()
    raise ValueError(f"unknown open-set score {method!r}; expected one of {', '.join(SCORE_METHODS)}")


def log_msp(logits: np.ndarray) -> np.ndarray:
    """`log(max softmax)` of `logits [N, K]` `[N]`, as `-log1p(sum_{j != top} exp(z_j - z_top))`: exact
    where the probability rounds to 1.0 (a margin of 50 gives -2e-22, not 0), so that confident samples
    keep their order. A class with logit -inf counts for nothing."""
    z = np.asarray(logits, dtype=np.float64)
    top = z.argmax(axis=1)
    shifted = z - z[np.arange(len(z)), top][:, None]
    with np.errstate(invalid="ignore"):
        others = np.where(np.arange(z.shape[1])[None, :] == top[:, None], 0.0, np.exp(shifted))
    return np.asarray(-np.log1p(np.nan_to_num(others, nan=0.0).sum(axis=1)))


def calibrate_threshold(known_scores: np.ndarray, tpr: float = 0.95) -> float:
    """The score threshold that accepts (score >= threshold) at least `tpr` of the known scores `[N]`:
    their (1 - tpr) quantile with lower interpolation."""
    scores = np.asarray(known_scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("calibrating a threshold needs at least one known score")
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    return float(np.quantile(scores, 1.0 - tpr, method="lower"))


class GaussianScorer:
    """Class-conditional Gaussians with one shared covariance (Lee et al. 2018), and one Gaussian of all
    the training features for the relative variant (Ren et al. 2021).

    Stored as `means [K, D]` with `whiten [D, R]` (whiten @ whiten.T is the shrunk shared precision), and
    `background_mean [D]` with `background_whiten [D, R]`. `score(X)` gives `-min_k d_k(x)`, `d_k` the
    squared Mahalanobis distance to class k; `score(X, relative=True)` gives `d_0(x) - min_k d_k(x)`,
    `d_0` the distance under the background Gaussian. Numpy only; `fit` needs scikit-learn.
    """

    def __init__(
        self, means: np.ndarray, whiten: np.ndarray, background_mean: np.ndarray, background_whiten: np.ndarray
    ) -> None:
        self.means = np.asarray(means, dtype=np.float64)
        self.whiten = np.asarray(whiten, dtype=np.float64)
        self.background_mean = np.asarray(background_mean, dtype=np.float64)
        self.background_whiten = np.asarray(background_whiten, dtype=np.float64)

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> GaussianScorer:
        """Fit on features `X [N, D]` with class indices `y [N]` (a class without samples keeps mean 0 and
        can never be nearest: its mean is set to +inf distance by `score`). Covariances are Ledoit-Wolf
        shrunk, so a few samples in many dimensions still give a usable precision."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        K = int(n_classes if n_classes is not None else y.max() + 1)
        counts = np.bincount(y, minlength=K)
        means = np.full((K, X.shape[1]), np.nan)
        present = counts > 0
        means[present] = np.stack([X[y == k].mean(axis=0) for k in np.flatnonzero(present)])
        centred = X - means[y]
        background_mean = X.mean(axis=0)
        return cls(
            means,
            _whitening(ledoit_wolf_covariance(centred)),
            background_mean,
            _whitening(ledoit_wolf_covariance(X - background_mean)),
        )

    @classmethod
    def fit_leaving_out(cls, X: np.ndarray, y: np.ndarray, n_classes: int, left_out: list[int]) -> list[GaussianScorer]:
        """`[fit(X[y != g], y[y != g]) for g in left_out]`, the same scorers, but with each class's scatter
        matrix computed once and summed (class means do not move when another class is left out)."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        counts = np.bincount(y, minlength=n_classes)
        present = counts > 0
        means = np.full((n_classes, X.shape[1]), np.nan)
        means[present] = np.stack([X[y == k].mean(axis=0) for k in np.flatnonzero(present)])
        centred = X - means[y]
        scatters = np.zeros((n_classes, X.shape[1], X.shape[1]))
        quartics = np.zeros(n_classes)
        for k in np.flatnonzero(present):
            rows = centred[y == k]
            scatters[k] = rows.T @ rows
            quartics[k] = ((rows**2).sum(axis=1) ** 2).sum()
        out = []
        for g in left_out:
            keep = present & (np.arange(n_classes) != g)
            n = int(counts[keep].sum())
            within = _ledoit_wolf_from(scatters[keep].sum(axis=0), float(quartics[keep].sum()), n)
            background_mean = (counts[keep, None] * means[keep]).sum(axis=0) / n
            shift = means[keep] - background_mean
            total = scatters[keep].sum(axis=0) + (counts[keep, None] * shift).T @ shift
            rows = X[y != g] - background_mean
            background = _ledoit_wolf_from(total, float(((rows**2).sum(axis=1) ** 2).sum()), n)
            class_means = np.where(keep[:, None], means, np.nan)
            out.append(cls(class_means, _whitening(within), background_mean, _whitening(background)))
        return out

    def class_distances(self, X: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distances `[N, K]` of `X [N, D]` to each class mean (inf for an absent class)."""
        Xw = np.asarray(X, dtype=np.float64) @ self.whiten
        present = np.asarray(np.isfinite(self.means).all(axis=1))
        Mw = np.where(present[:, None], self.means, 0.0) @ self.whiten
        d = (Xw**2).sum(axis=1)[:, None] - 2 * Xw @ Mw.T + (Mw**2).sum(axis=1)[None, :]
        return np.where(present[None, :], np.maximum(d, 0.0), np.inf)

    def score(self, X: np.ndarray, relative: bool = False) -> np.ndarray:
        """Open-set score `[N]` of `X [N, D]` (higher = nearer a known class)."""
        nearest = self.class_distances(X).min(axis=1)
        if not relative:
            return np.asarray(-nearest)
        background = (((np.asarray(X, dtype=np.float64) - self.background_mean) @ self.background_whiten) ** 2).sum(1)
        return np.asarray(background - nearest)

    def scores_for(self, method: str, X: np.ndarray) -> np.ndarray:
        """`score` for the method name `mahalanobis` or `relative_mahalanobis`."""
        return self.score(X, relative=method == "relative_mahalanobis")

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to save (names prefixed `gaussian_`), for `from_arrays`."""
        return {
            "gaussian_means": self.means,
            "gaussian_whiten": self.whiten,
            "gaussian_background_mean": self.background_mean,
            "gaussian_background_whiten": self.background_whiten,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> GaussianScorer:
        """Rebuild from `arrays()`."""
        return cls(
            arrays["gaussian_means"],
            arrays["gaussian_whiten"],
            arrays["gaussian_background_mean"],
            arrays["gaussian_background_whiten"],
        )


def ledoit_wolf_covariance(centred: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrunk covariance `[D, D]` of centred rows `[N, D]`: (1 - a) S + a (tr S / D) I with
    the shrinkage a of Ledoit and Wolf (2004), as `sklearn.covariance.ledoit_wolf(assume_centered=True)`."""
    X = np.asarray(centred, dtype=np.float64)
    return _ledoit_wolf_from(X.T @ X, float(((X**2).sum(axis=1) ** 2).sum()), len(X))


def _ledoit_wolf_from(scatter: np.ndarray, quartic: float, n: int) -> np.ndarray:
    """Ledoit-Wolf covariance from the scatter matrix `[D, D]` of n centred rows and the sum of their
    squared squared norms."""
    d = len(scatter)
    S = scatter / n
    mu = np.trace(S) / d
    delta = ((S - mu * np.eye(d)) ** 2).sum() / d
    beta = (quartic / n - (S**2).sum()) / (n * d)
    shrinkage = 0.0 if delta <= 0 else min(max(beta, 0.0), delta) / delta
    return np.asarray((1 - shrinkage) * S + shrinkage * mu * np.eye(d))


def _whitening(covariance: np.ndarray) -> np.ndarray:
    """`W [D, D]` with `W @ W.T` the inverse of a symmetric positive (semi-)definite `covariance [D, D]`:
    the inverse Cholesky factor, or from the eigenvalues floored at 1e-10 of the largest when singular."""
    from scipy.linalg import LinAlgError, cholesky
    from scipy.linalg.lapack import dtrtri

    try:
        inverse, info = dtrtri(cholesky(covariance, lower=True), lower=1)
        if info == 0:
            return np.asarray(inverse.T)
    except LinAlgError:
        pass
    values, vectors = np.linalg.eigh(covariance)
    values = np.maximum(values, max(values.max(), 1e-300) * 1e-10)
    return np.asarray(vectors / np.sqrt(values)[None, :])


def l2_join(features: np.ndarray, n_blocks: int) -> np.ndarray:
    """Each of the `n_blocks` equal segments of concatenated block features `[N, n_blocks * D]` scaled to
    unit L2 norm (float64): the normalised join of several blocks, so that no block dominates by scale."""
    features = np.asarray(features, dtype=np.float64)
    if n_blocks < 1 or features.shape[1] % n_blocks:
        raise ValueError(f"cannot split {features.shape[1]} features into {n_blocks} equal blocks")
    parts = features.reshape(len(features), n_blocks, -1)
    norms = np.linalg.norm(parts, axis=2, keepdims=True)
    return np.asarray((parts / np.maximum(norms, np.finfo(np.float64).tiny)).reshape(features.shape))


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Rows of `features [N, D]` scaled to unit L2 norm (float32; zero rows stay zero)."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, np.finfo(np.float32).tiny)


def nearest_neighbours(
    queries: np.ndarray, reference: np.ndarray, k: int, *, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` most cosine-similar rows of `reference [M, D]` for each row of `queries [N, D]`.

    Returns `(similarities [N, k], indices [N, k])`, most similar first. With `exclude_self`, queries are
    the reference itself and each row skips its own index (leave-one-out).
    """
    q, r = l2_normalize(queries), l2_normalize(reference)
    k = min(k, r.shape[0] - int(exclude_self))
    if k < 1:
        raise ValueError("nearest_neighbours needs at least one reference row besides the query")
    similarities = np.empty((q.shape[0], k), dtype=np.float32)
    indices = np.empty((q.shape[0], k), dtype=np.int64)
    for start in range(0, q.shape[0], _CHUNK):
        block = q[start : start + _CHUNK] @ r.T
        if exclude_self:
            rows = np.arange(block.shape[0])
            block[rows, rows + start] = -np.inf
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        indices[start : start + _CHUNK] = np.take_along_axis(top, order, axis=1)
        similarities[start : start + _CHUNK] = np.take_along_axis(top_sims, order, axis=1)
    return similarities, indices


def max_cosine_similarity(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Largest cosine similarity `[N]` of each query row `[N, D]` to the reference rows `[M, D]`
    (the `knn` open-set score)."""
    return nearest_neighbours(queries, reference, 1)[0][:, 0].astype(np.float64)


def _needed(value: np.ndarray | None, method: str, name: str) -> np.ndarray:
    if value is None:
        raise ValueError(f"the {method!r} open-set score needs {name}")
    return value
