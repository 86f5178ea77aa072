"""Open-set scores (higher = more likely a known source), their threshold, and cosine neighbours.

Numpy only: the same code scores images at inference time and held-out generators during training.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from scipy.special import logsumexp, softmax

ScoreMethod = Literal["msp", "max_logit", "energy", "knn"]
SCORE_METHODS: tuple[str, ...] = get_args(ScoreMethod)
_CHUNK = 1024  # query rows per similarity block: bounds memory at _CHUNK x len(reference)


def open_set_score(
    method: str,
    *,
    logits: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    knn_similarity: np.ndarray | None = None,
) -> np.ndarray:
    """Open-set score `[N]`, higher meaning more likely known.

    - `msp`: maximum softmax probability of `probs [N, K]` (or of `softmax(logits)`), the paper's score;
    - `max_logit`: maximum of `logits [N, K]`;
    - `energy`: `logsumexp(logits)` over classes (temperature 1), the negative free energy;
    - `knn`: `knn_similarity [N]`, the largest cosine similarity to the training features.
    """
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


def calibrate_threshold(known_scores: np.ndarray, tpr: float = 0.95) -> float:
    """The score threshold that accepts (score >= threshold) at least `tpr` of the known scores `[N]`:
    their (1 - tpr) quantile with lower interpolation."""
    scores = np.asarray(known_scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("calibrating a threshold needs at least one known score")
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    return float(np.quantile(scores, 1.0 - tpr, method="lower"))


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
