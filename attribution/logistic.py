"""Multinomial L2 logistic regression, many fits at once, solved to convergence.

One call fits Q logistic regressions on the same N samples, each on its own subset (a boolean mask):
the folds of a cross-validation, the runs that hold one generator out, the C sweep's validation fits.
They are independent, so the sum of their objectives has each one's optimum, and one L-BFGS run pays
the solver's per-step overhead once. Every fit has scikit-learn's objective with per-sample weights,

    sum_i w_i log_loss_i / n_q  +  ||W||^2 / (2 C n_q)     (intercept not penalised),

so C means what it means in `LogisticRegression(C=C, class_weight=...)` and in the paper's sweep
(`class_weight="balanced"` gives w_i = n_q / (K_q n_{q, y_i}), K_q the classes present in fit q).
Unlike scikit-learn, two classes are fitted with two symmetric logits, as more classes are.

Solved in other variables with the same optimum: features centred (the intercept absorbs the shift),
expressed in the basis of their own span when there are fewer samples than dimensions, and each column
rescaled with its penalty so that the problem is nearly isotropic. L-BFGS then reaches a projected
gradient of `tol` (default 1e-8, in those well-scaled variables) in tens to a few hundred steps; a run
that stops at `max_iter` before that is reported (`converged=False`) and warned about with scikit-learn's
`ConvergenceWarning`. Because the optimum is unique (strictly convex objective) and reached, a fit
warm-started from another C's solution and one started from zero give the same head.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

# A class absent from a fit's training samples gets this logit offset: probability 0, no data gradient.
_ABSENT = -1e9
_CURVATURE = 0.25  # the softmax log-loss curves by at most about this much times a column's mean square
DEFAULT_TOL = 1e-8
DEFAULT_MAX_ITER = 1000  # the authors' max_iter
# Below this many values per product, one BLAS thread beats waking several (as in `attribution.heads`).
_SINGLE_THREAD_SIZE = 1 << 26


@dataclass
class MultinomialFits:
    """Q fitted logistic regressions in the original feature space.

    `coef [Q, D, K]`, `intercept [Q, K]` (a class absent from fit q has intercept -inf there, so its
    probability is 0), `n_iter` L-BFGS steps, `converged` and the final max-abs projected gradient."""

    coef: np.ndarray
    intercept: np.ndarray
    n_iter: int
    converged: bool
    gradient: float

    def logits(self, X: np.ndarray) -> np.ndarray:
        """Logits `[Q, N, K]` of features `X [N, D]` under every fit."""
        return np.asarray(np.asarray(X, dtype=np.float64)[None] @ self.coef + self.intercept[:, None, :])


def fit_multinomial(
    X: np.ndarray,
    y: np.ndarray,
    masks: np.ndarray,
    *,
    C: float,
    n_classes: int | None = None,
    class_weight: str | None = "balanced",
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    init: MultinomialFits | None = None,
) -> MultinomialFits:
    """Fit Q multinomial L2 logistic regressions of features `X [N, D]`, class indices `y [N]` (0..K-1)
    on the rows of each boolean mask `masks [Q, N]`, with inverse regularisation `C`. `init` warm-starts
    from earlier fits of the same shape (any C). Returns `MultinomialFits`."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    masks = np.atleast_2d(np.asarray(masks, dtype=bool))
    n, d = X.shape
    K = int(n_classes if n_classes is not None else y.max() + 1)
    Q = len(masks)
    per_fit = masks.sum(axis=1)
    if masks.shape != (Q, n) or per_fit.min() < 1:
        raise ValueError(f"masks {masks.shape} must be [Q, {n}] with a training sample in each row")
    if class_weight not in (None, "balanced"):
        raise ValueError(f"class_weight must be None or 'balanced', got {class_weight!r}")
    if not C > 0:
        raise ValueError(f"C must be positive, got {C}")

    onehot = np.eye(K)[y]  # [N, K]
    counts = masks.astype(np.float64) @ onehot  # [Q, K] samples of each class in each fit
    present = counts > 0
    if class_weight == "balanced":
        n_present = present.sum(axis=1, keepdims=True)
        per_class = np.where(present, per_fit[:, None] / (n_present * np.maximum(counts, 1)), 0.0)
        sample_weight = per_class[:, y] * masks  # [Q, N]
    else:
        sample_weight = masks.astype(np.float64)
    weights = sample_weight / per_fit[:, None]  # each fit's weighted mean over its own samples

    mean = X.mean(axis=0)
    Z = X - mean
    basis = None
    if n < d:  # an L2-penalised solution lies in the span of the rows: solve in that basis
        _, s, Vt = np.linalg.svd(Z, full_matrices=False)
        keep = s > s[0] * 1e-12 if s.size else s > 0
        basis = Vt[keep].T  # [D, r]
        Z = Z @ basis
    width = Z.shape[1]
    scale = np.sqrt(_CURVATURE * (Z**2).mean(axis=0) + 1.0 / (C * per_fit.mean()))  # [width]
    Z = Z / scale
    # Laid out as one matrix product per step: coefficients [width, Q * K], logits [N, Q, K].
    penalty = np.broadcast_to((1.0 / (C * per_fit))[None, :, None] / scale[:, None, None] ** 2, (width, Q, K)).reshape(
        width, Q * K
    )
    offset = np.where(present, 0.0, _ABSENT)[None]  # [1, Q, K]
    weights_nq = np.ascontiguousarray(weights.T)[:, :, None]  # [N, Q, 1]
    onehot_n = onehot[:, None, :]  # [N, 1, K]
    n_coef = width * Q * K

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        coef = theta[:n_coef].reshape(width, Q * K)
        logits = (Z @ coef).reshape(n, Q, K) + theta[n_coef:].reshape(1, Q, K) + offset
        top = logits.max(axis=2, keepdims=True)
        E = np.exp(logits - top)
        total = E.sum(axis=2, keepdims=True)
        log_loss = np.log(total[..., 0]) + top[..., 0] - (logits * onehot_n).sum(axis=2)  # [N, Q]
        loss = float((weights_nq[..., 0] * log_loss).sum() + 0.5 * (penalty * coef**2).sum())
        G = ((E / total - onehot_n) * weights_nq).reshape(n, Q * K)
        coef_grad = Z.T @ G + penalty * coef
        return loss, np.concatenate([coef_grad.ravel(), G.sum(axis=0)])

    theta0 = np.zeros(n_coef + Q * K)
    if init is not None and init.coef.shape == (Q, d, K):
        # From original coordinates to these: logits = Z' (scale W') + b' with Z' = (X - mean) basis / scale.
        W = init.coef if basis is None else basis.T @ init.coef  # [Q, width, K]
        b = np.where(np.isfinite(init.intercept), init.intercept, 0.0) + mean @ init.coef
        W = (W * scale[None, :, None]).transpose(1, 0, 2)
        theta0 = np.concatenate([W.ravel(), b.ravel()])
    with threadpool_limits(1 if Z.size * Q * K <= _SINGLE_THREAD_SIZE else None):
        result = _minimize(objective, theta0, tol, max_iter)
    coef_z = result.x[:n_coef].reshape(width, Q, K).transpose(1, 0, 2)
    intercept_z = result.x[n_coef:].reshape(Q, K)
    gradient = float(np.abs(objective(result.x)[1]).max())
    converged = bool(result.status == 0)
    if not converged:
        warnings.warn(
            f"logistic regression (C={C:.3g}, {Q} fits) stopped after {result.nit} steps with gradient "
            f"{gradient:.2g} > tol {tol:.2g}: {result.message}",
            ConvergenceWarning,
            stacklevel=2,
        )
    W = coef_z / scale[None, :, None]  # [Q, width, K] on centred (projected) features
    coef = W if basis is None else basis @ W
    intercept = intercept_z - mean @ coef
    intercept = np.where(present, intercept, -np.inf)
    return MultinomialFits(
        coef=coef, intercept=intercept, n_iter=int(result.nit), converged=converged, gradient=gradient
    )


def _minimize(objective: Any, theta0: np.ndarray, tol: float, max_iter: int) -> Any:
    return minimize(
        objective,
        theta0,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": tol, "ftol": 64 * np.finfo(float).eps, "maxcor": 10},
    )
