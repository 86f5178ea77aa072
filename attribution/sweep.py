"""The paper's key figure on a head's own reference images: how well a linear probe does on the CLS
features of each block, measured cheaply enough to run in every training job.

For each block: stratified K-fold accuracy and macro F1 of a multinomial L2 logistic regression with one
fixed C (the head's), on the folds `attribution.training` measures the head with, so the figure at the
head's own block is the head's. Optionally also the open-set AUROC of the maximum softmax probability
with each known generator held out in turn, as the head is measured; that costs about one more sweep
per held-out generator (on the synthetic benchmark's 5 x 10 references: 0.25 s without, 1.2 s with).

Cheap because every one of those logistic regressions (blocks x folds x held-out classes) is fitted in
one L-BFGS run: they are independent, so the sum of their objectives has each one's optimum, and the
solver's per-step overhead, which dominates fits this small, is paid once instead of once per fit. Each
fit is also made small and well conditioned without changing its answer: features are centred (the
unpenalised intercept absorbs any shift); when there are fewer images than feature dimensions they are
expressed in the basis of the images' own span (an L2-penalised solution lies in the span of its
training rows, and logits are only needed for these images); and each column is rescaled, the penalty
with it, so that L-BFGS needs a few dozen steps rather than hundreds.

Training-only: inference never imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from sklearn.model_selection import StratifiedKFold

from attribution import metrics as m
from attribution.heads import limit_threads

# A class absent from a fit's training samples gets this logit offset: its probability is 0 and its
# parameters get no gradient (finite, so that 0 x offset stays 0).
_ABSENT = -1e9
# The mean log-loss curves along a feature column by at most about this much times the column's mean
# square (the softmax's Hessian is bounded by 1/2, and less away from the uniform guess).
_CURVATURE = 0.25


@dataclass(frozen=True)
class BlockScore:
    """A linear probe's cross-validated figures on one block's features (fractions in [0, 1])."""

    block: int
    accuracy: float
    macro_f1: float
    auroc: float | None = None  # mean over held-out generators; None when not measured

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sweep_blocks(
    features: Mapping[int, np.ndarray],
    labels: Sequence[str],
    *,
    C: float = 1.0,
    cv_folds: int = 5,
    open_set: bool = False,
    real_label: str = "real",
    random_state: int = 0,
    max_iter: int = 500,
) -> list[BlockScore]:
    """Score a linear probe with inverse regularisation `C` on each block of `features {block: [N, D]}`.

    `labels [N]` name the class of each row. Closed set: out-of-fold predictions of a stratified K-fold
    (K = min(cv_folds, smallest class), at least 2; the same folds for every block) give accuracy and
    macro F1. With `open_set` and at least three classes, each class but `real_label` is held out in
    turn on the same folds (a probe trained without it scores the fold's other images as known and its
    images as unknown) and `auroc` is the mean over held-out classes. Returns one `BlockScore` per
    block, in block order. ValueError when a class has fewer than two samples or there is one class.
    """
    blocks = sorted(int(block) for block in features)
    if not blocks:
        raise ValueError("no block to sweep")
    classes, y = np.unique(np.asarray([str(label) for label in labels]), return_inverse=True)
    counts = np.bincount(y, minlength=len(classes))
    if len(classes) < 2 or counts.min() < 2:
        raise ValueError("the sweep needs two classes or more, with two samples or more in each")
    stacked = np.stack([np.asarray(features[block], dtype=np.float64) for block in blocks])
    if stacked.ndim != 3 or stacked.shape[1] != len(y):
        raise ValueError(f"features {stacked.shape[1:]} and {len(y)} labels must describe the same samples")

    splitter = StratifiedKFold(
        n_splits=max(2, min(cv_folds, int(counts.min()))), shuffle=True, random_state=random_state
    )
    folds = list(splitter.split(np.zeros((len(y), 1)), y))
    held_out = (
        [index for index, name in enumerate(classes.tolist()) if name != real_label]
        if open_set and len(classes) >= 3
        else []
    )
    # One fit per fold, then one per (held-out class, fold): each is a mask of its training samples.
    masks = [_mask(len(y), train) for train, _ in folds]
    masks += [_mask(len(y), train) & (y != g) for g in held_out for train, _ in folds]
    logits = fit_logistic_regressions(stacked, y, np.stack(masks), C=C, max_iter=max_iter)

    scores = []
    for b, block in enumerate(blocks):
        predicted = np.empty_like(y)
        for q, (_, test) in enumerate(folds):
            predicted[test] = logits[b, q, test].argmax(axis=1)
        auroc = None
        if held_out:
            per_class = []
            for i, g in enumerate(held_out):
                known, unknown = [], []
                for f, (_, test) in enumerate(folds):
                    msp = _softmax(logits[b, len(folds) * (i + 1) + f, test]).max(axis=1)
                    known.append(msp[y[test] != g])
                    unknown.append(msp[y[test] == g])
                per_class.append(m.auroc(np.concatenate(known), np.concatenate(unknown)))
            auroc = float(np.mean(per_class))
        scores.append(
            BlockScore(
                block=block,
                accuracy=m.accuracy(y, predicted),
                macro_f1=m.macro_f1(y, predicted, np.arange(len(classes))),
                auroc=auroc,
            )
        )
    return scores


def fit_logistic_regressions(
    features: np.ndarray,
    labels: np.ndarray,
    train_masks: np.ndarray,
    *,
    C: float = 1.0,
    max_iter: int = 500,
) -> np.ndarray:
    """Fit one multinomial L2 logistic regression per (feature set, training mask), all at once.

    features `[B, N, D]`: B feature sets of the same N samples (the blocks); labels `[N]`: class indices
    0..K-1; train_masks `[Q, N]` bool: the samples each of Q fits is trained on. Each (b, q) fit has
    scikit-learn's objective (mean log-loss over its samples + ||W||^2 / (2 C n_q), intercept not
    penalised; binary when two classes are present), so it matches `LogisticRegression(C=C)` fitted on
    `features[b][train_masks[q]]` up to the solvers' tolerance. Returns the logits `[B, Q, N, K]` of every
    sample under every fit; a class with no training sample in a fit gets -inf there.
    """
    X = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    masks = np.asarray(train_masks, dtype=bool)
    n_sets, n, _ = X.shape
    n_fits, n_classes = len(masks), int(y.max()) + 1
    per_fit = masks.sum(axis=1)
    if masks.shape != (n_fits, n) or per_fit.min() < 1:
        raise ValueError(f"train_masks {masks.shape} must be [Q, {n}] with a training sample in each row")
    X = X - X.mean(axis=1, keepdims=True)
    if n < X.shape[2]:  # the rows' own basis: [B, N, N], the same logits for a fraction of the work
        U, s, _ = np.linalg.svd(X, full_matrices=False)
        X = U * s[:, None, :]
    width = X.shape[2]
    # Each column divided by the square root of its expected curvature plus the penalty's, the penalty
    # rescaled with it: the same problem in other variables, nearly isotropic, so L-BFGS needs a
    # fraction of the steps (about 80 instead of 300 on the synthetic benchmark's references).
    scale = np.sqrt(_CURVATURE * (X**2).mean(axis=1) + 1.0 / (C * per_fit.mean()))  # [B, width]
    X = X / scale[:, None, :]
    onehot = np.eye(n_classes)[y]  # [N, K]
    weights = masks / per_fit[:, None]  # [Q, N]: each fit's mean over its own samples
    present = np.stack([np.bincount(y[mask], minlength=n_classes) > 0 for mask in masks])  # [Q, K]
    # With two classes scikit-learn fits one (binary) logit, whose penalty amounts to twice the one of
    # two symmetric multinomial columns: doubled here to match.
    strength = np.where(present.sum(axis=1) == 2, 2.0, 1.0) / (C * per_fit)  # [Q]
    penalty = strength[None, :, None, None] / scale[:, None, :, None] ** 2  # [B, Q, width, 1]
    offset = np.where(present, 0.0, _ABSENT)[None, :, None, :]  # [1, Q, 1, K]
    n_coef = n_sets * n_fits * width * n_classes

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        coef = theta[:n_coef].reshape(n_sets, n_fits, width, n_classes)
        return coef, theta[n_coef:].reshape(n_sets, n_fits, 1, n_classes)

    def logits_of(coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
        return np.asarray(X[:, None] @ coef + intercept + offset)  # [B, Q, N, K]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        coef, intercept = unpack(theta)
        Z = logits_of(coef, intercept)
        top = Z.max(axis=3, keepdims=True)
        E = np.exp(Z - top)
        total = E.sum(axis=3, keepdims=True)
        log_loss = (np.log(total) + top)[..., 0] - (Z * onehot).sum(axis=3)  # [B, Q, N]
        loss = float((weights * log_loss).sum() + 0.5 * (penalty * coef**2).sum())
        G = (E / total - onehot) * weights[None, :, :, None]  # [B, Q, N, K]
        coef_grad = np.swapaxes(X, 1, 2)[:, None] @ G + penalty * coef
        return loss, np.concatenate([coef_grad.ravel(), G.sum(axis=2).ravel()])

    with limit_threads(X.size):
        result = minimize(
            objective,
            np.zeros(n_coef + n_sets * n_fits * n_classes),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": max_iter},
        )
        logits = logits_of(*unpack(result.x))
    return np.where(offset < 0, -np.inf, logits)


def _mask(n: int, rows: np.ndarray) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return mask


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))
