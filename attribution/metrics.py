"""Closed-set and open-set metrics, all fractions in [0, 1] (the paper reports them as percentages).

Plain numpy (and scipy's ranking), so evaluation, training and tests share one implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from attribution.openset import calibrate_threshold

ArrayLike = np.ndarray | Sequence[Any]


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of the N predictions `y_pred [N]` equal to `y_true [N]`."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def confusion(y_true: ArrayLike, y_pred: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """Confusion matrix `[K, K]` int over `labels [K]`: rows are true labels, columns predictions.

    Pairs whose true or predicted label is not in `labels` are left out (as scikit-learn does).
    """
    y_true, y_pred = _pair(y_true, y_pred)
    labels = np.asarray(labels)
    index = {label: i for i, label in enumerate(labels.tolist())}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true.tolist(), y_pred.tolist(), strict=True):
        if t in index and p in index:
            matrix[index[t], index[p]] += 1
    return matrix


def per_class_recall(
    y_true: ArrayLike, y_pred: ArrayLike, labels: ArrayLike | None = None
) -> dict[Any, float]:
    """Recall of each label (default: the labels present in `y_true [N]`); 0 for a label with no samples."""
    labels = np.unique(np.asarray(y_true)) if labels is None else np.asarray(labels)
    matrix = confusion(y_true, y_pred, labels)
    support = matrix.sum(axis=1)
    recall = np.divide(np.diag(matrix), support, out=np.zeros(len(labels)), where=support > 0)
    return {label: float(r) for label, r in zip(labels.tolist(), recall, strict=True)}


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike, labels: ArrayLike | None = None) -> float:
    """Unweighted mean of the per-label F1 (default labels: those in `y_true` or `y_pred`); F1 is 0 for
    a label never true nor predicted correctly, as in scikit-learn's `f1_score(average="macro")`."""
    y_true, y_pred = _pair(y_true, y_pred)
    labels = np.unique(np.concatenate([y_true, y_pred])) if labels is None else np.asarray(labels)
    matrix = confusion(y_true, y_pred, labels)
    tp = np.diag(matrix).astype(float)
    denominator = matrix.sum(axis=0) + matrix.sum(axis=1)  # 2 tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros(len(labels)), where=denominator > 0)
    return float(f1.mean())


def auroc(known_scores: ArrayLike, unknown_scores: ArrayLike) -> float:
    """Area under the ROC curve of known `[N]` (positive) against unknown `[M]` samples, higher score
    meaning more likely known; ties count one half (the Mann-Whitney U statistic over N * M pairs)."""
    known = np.asarray(known_scores, dtype=np.float64).ravel()
    unknown = np.asarray(unknown_scores, dtype=np.float64).ravel()
    if known.size == 0 or unknown.size == 0:
        raise ValueError("AUROC needs at least one known and one unknown score")
    ranks = rankdata(np.concatenate([known, unknown]))  # average ranks: ties count 1/2
    u = ranks[: known.size].sum() - known.size * (known.size + 1) / 2
    return float(u / (known.size * unknown.size))


def oscr(known_probs: np.ndarray, known_labels: ArrayLike, unknown_probs: np.ndarray) -> float:
    """Open-set classification rate (Dhamija et al., NeurIPS 2018).

    `known_probs [N, K]` with true column indices `known_labels [N]`, `unknown_probs [M, K]`; the score is
    the maximum probability. As the threshold t falls through every score, CCR(t) is the fraction of known
    samples with score >= t whose argmax is right and FPR(t) the fraction of unknown samples with
    score >= t; the result is the trapezoid area under CCR against FPR from (0, 0) to FPR = 1.
    """
    known_probs = np.asarray(known_probs, dtype=np.float64)
    unknown_probs = np.asarray(unknown_probs, dtype=np.float64)
    labels = np.asarray(known_labels).ravel()
    if known_probs.shape[0] == 0 or unknown_probs.shape[0] == 0:
        raise ValueError("OSCR needs at least one known and one unknown sample")
    return oscr_scores(known_probs.max(axis=1), known_probs.argmax(axis=1) == labels, unknown_probs.max(axis=1))


def oscr_scores(known_scores: ArrayLike, known_correct: ArrayLike, unknown_scores: ArrayLike) -> float:
    """OSCR of any open-set score: known scores `[N]` with whether each known sample is classified right
    `known_correct [N]` bool, and unknown scores `[M]` (higher = more likely known); as `oscr`."""
    known = np.asarray(known_scores, dtype=np.float64).ravel()
    correct = np.asarray(known_correct, dtype=bool).ravel()
    unknown = np.sort(np.asarray(unknown_scores, dtype=np.float64).ravel())
    if known.size == 0 or unknown.size == 0:
        raise ValueError("OSCR needs at least one known and one unknown sample")
    if correct.shape != known.shape:
        raise ValueError(f"{known.size} known scores but {correct.size} correctness flags")
    correct_scores = np.sort(known[correct])
    thresholds = np.unique(np.concatenate([known, unknown]))[::-1]
    ccr = (correct_scores.size - np.searchsorted(correct_scores, thresholds, side="left")) / known.size
    fpr = (unknown.size - np.searchsorted(unknown, thresholds, side="left")) / unknown.size
    return float(np.trapezoid(np.concatenate([[0.0], ccr]), np.concatenate([[0.0], fpr])))


def tnr_at_tpr(known_scores: ArrayLike, unknown_scores: ArrayLike, tpr: float = 0.95) -> float:
    """Fraction of unknown scores `[M]` rejected by the threshold that accepts `tpr` of known scores `[N]`."""
    threshold = calibrate_threshold(np.asarray(known_scores), tpr=tpr)
    return float(np.mean(np.asarray(unknown_scores, dtype=np.float64) < threshold))


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if a.shape != b.shape:
        raise ValueError(f"y_true has {a.size} labels but y_pred has {b.size}")
    return a, b
