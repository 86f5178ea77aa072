"""The heads keep scikit-learn's estimator contract and learn seeded Gaussian clusters."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from attribution.heads import PAPER_C_GRID, KNNHead, LinearProbe
from attribution.openset import l2_normalize

SHORT_GRID = 10 ** np.linspace(-4, 3, 8)


def _clusters(
    n_classes: int, per_class: int, dim: int, *, spread: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian clusters with string labels: (X_train, y_train, X_test, y_test)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * spread
    names = np.array([f"gen{i:02d}" for i in range(n_classes)])

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate([c + rng.normal(size=(n, dim)) for c in centres]), np.repeat(names, n)

    return *draw(per_class), *draw(per_class)


@pytest.mark.parametrize("head", [LinearProbe(c_grid=SHORT_GRID), KNNHead()])
def test_it_keeps_the_estimator_contract(head: LinearProbe | KNNHead) -> None:
    X, y, X_test, _ = _clusters(3, 20, 8, spread=1.0)
    unfitted = clone(head)
    assert unfitted.get_params().keys() == head.get_params().keys()
    assert not [name for name in vars(unfitted) if name.endswith("_")]  # __init__ stores parameters only
    # Labels deliberately not in sorted order: columns must follow classes_, which are sorted.
    y = np.array([{"gen00": "zeta", "gen01": "alpha", "gen02": "mu"}[label] for label in y.tolist()])
    assert unfitted.fit(X, y) is unfitted
    assert unfitted.classes_.tolist() == ["alpha", "mu", "zeta"]
    probs = unfitted.predict_proba(X_test)
    assert probs.shape == (len(X_test), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_array_equal(unfitted.predict(X_test), unfitted.classes_[probs.argmax(axis=1)])
    # The "zeta" column is the most probable on average for the "zeta" cluster.
    zeta = list(unfitted.classes_).index("zeta")
    assert probs[:20].mean(axis=0).argmax() == zeta
    assert unfitted.decision_scores(X_test).shape == (len(X_test),)
    with pytest.raises(ValueError):
        unfitted.predict_proba(X_test[:, :5])  # wrong number of features


@pytest.mark.parametrize("head", [LinearProbe(), KNNHead()])
def test_it_refuses_a_single_class(head: LinearProbe | KNNHead) -> None:
    with pytest.raises(ValueError, match="at least 2 classes"):
        head.fit(np.ones((4, 3)), ["a"] * 4)


def test_it_learns_separable_clusters_with_the_paper_grid() -> None:
    X, y, X_test, y_test = _clusters(10, 50, 384)
    start = time.perf_counter()
    probe = LinearProbe().fit(X, y)
    print(f"LinearProbe, paper grid, 10 x 50 x 384: {time.perf_counter() - start:.2f} s")
    assert np.mean(probe.predict(X_test) == y_test) > 0.95
    # Coarse to fine: a subset of the paper's grid, the best held-out AUROC among them.
    assert set(probe.selection_scores_) <= set(PAPER_C_GRID.tolist()) and len(probe.selection_scores_) >= 10
    assert probe.C_ in probe.selection_scores_
    assert probe.selection_scores_[probe.C_] == max(probe.selection_scores_.values())
    assert probe.coef_.shape == (10, 384) and probe.intercept_.shape == (10,)
    assert probe.converged_


@pytest.mark.parametrize("n_classes", [2, 4])
def test_it_predicts_like_scikit_learn_with_the_chosen_c(n_classes: int) -> None:
    X, y, X_test, _ = _clusters(n_classes, 30, 16, spread=0.5)
    probe = LinearProbe(c_grid=SHORT_GRID).fit(X, y)
    # Two classes: two symmetric logits, whose penalty is half of scikit-learn's single binary logit's.
    C = probe.C_ * (2 if n_classes == 2 else 1)
    reference = LogisticRegression(C=C, max_iter=10_000, tol=1e-12, class_weight="balanced").fit(X, y)
    np.testing.assert_allclose(probe.predict_proba(X_test), reference.predict_proba(X_test), atol=1e-5)
    assert probe.decision_function(X_test).shape == (len(X_test), n_classes)


@pytest.mark.parametrize("select_by", ["logo", "accuracy"])
def test_it_selects_c_on_overlapping_clusters(select_by: str) -> None:
    X, y, X_test, y_test = _clusters(4, 40, 32, spread=0.25, seed=3)
    probe = LinearProbe(c_grid=SHORT_GRID, select_by=select_by).fit(X, y)
    scores = np.array(list(probe.selection_scores_.values()))
    assert probe.selection_scores_[probe.C_] == scores.max()
    assert np.all((scores >= 0) & (scores <= 1))
    assert np.mean(probe.predict(X_test) == y_test) > 0.5  # chance is 0.25


def test_it_cross_validates_c_when_classes_are_small_and_skips_it_for_a_single_sample() -> None:
    X, y, _, _ = _clusters(3, 3, 8, spread=1.0)
    probe = LinearProbe(c_grid=SHORT_GRID, cv_folds=5, coarse_to_fine=False).fit(X, y)  # 3 per class: k-fold
    assert len(probe.selection_scores_) == len(SHORT_GRID)
    single = LinearProbe(c_grid=SHORT_GRID).fit(X[2:], y[2:])  # "gen00" keeps one sample
    assert single.C_ == 1.0 and single.selection_scores_ == {}
    assert LinearProbe(c_grid=[0.5]).fit(X, y).C_ == 0.5


def test_it_refuses_an_unknown_selection_criterion() -> None:
    X, y, _, _ = _clusters(2, 5, 4)
    with pytest.raises(ValueError, match="select_by"):
        LinearProbe(select_by="loss").fit(X, y)


def _reference_knn_proba(X: np.ndarray, y: np.ndarray, queries: np.ndarray, k: int, skip_self: bool) -> np.ndarray:
    """A plain loop: similarity-weighted votes of the k most similar training rows (negative weights 0)."""
    classes = np.unique(y)
    Xn, Qn = l2_normalize(X).astype(float), l2_normalize(queries).astype(float)
    out = np.zeros((len(queries), len(classes)))
    for i, q in enumerate(Qn):
        similarity = Xn @ q
        if skip_self:
            similarity[i] = -np.inf
        for j in np.argsort(-similarity, kind="stable")[:k]:
            out[i, np.searchsorted(classes, y[j])] += max(similarity[j], 0.0)
    return out / out.sum(axis=1, keepdims=True)


def test_it_matches_a_plain_knn_loop() -> None:
    X, y, X_test, y_test = _clusters(3, 15, 12, spread=0.6, seed=1)
    knn = KNNHead(k_grid=range(1, 11)).fit(X, y)
    loo_accuracy = {
        k: np.mean(np.unique(y)[_reference_knn_proba(X, y, X, k, skip_self=True).argmax(axis=1)] == y)
        for k in range(1, 11)
    }
    best = max(loo_accuracy.values())
    assert knn.k_ == max(k for k, accuracy in loo_accuracy.items() if accuracy == best)  # ties: larger k
    np.testing.assert_allclose(
        knn.predict_proba(X_test), _reference_knn_proba(X, y, X_test, knn.k_, skip_self=False), atol=1e-5
    )
    np.testing.assert_allclose(knn.decision_scores(X_test), knn.predict_proba(X_test).max(axis=1))
    similarity = l2_normalize(X_test) @ l2_normalize(X).T
    np.testing.assert_allclose(knn.max_similarity(X_test), similarity.max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(knn.decision_scores(X_test, "knn"), similarity.max(axis=1), rtol=1e-5)
    assert np.mean(knn.predict(X_test) == y_test) > 0.6  # chance is 1/3


def test_it_clips_k_to_the_training_size_and_stores_normalised_features() -> None:
    X, y, _, _ = _clusters(2, 2, 5, spread=2.0)
    knn = KNNHead(k_grid=[10, 50]).fit(X, y)
    assert knn.k_ == 3
    np.testing.assert_allclose(np.linalg.norm(knn.X_, axis=1), 1.0, rtol=1e-6)
    assert knn.y_.tolist() == [0, 0, 1, 1]


def test_it_needs_similarities_for_a_linear_knn_score() -> None:
    X, y, _, _ = _clusters(2, 10, 4)
    probe = LinearProbe(c_grid=[1.0]).fit(X, y)
    with pytest.raises(ValueError, match="knn_similarity"):
        probe.decision_scores(X, "knn")
    np.testing.assert_array_equal(probe.decision_scores(X, "knn", knn_similarity=np.arange(20.0)), np.arange(20.0))
    np.testing.assert_allclose(probe.decision_scores(X, "max_logit"), probe.decision_function(X).max(axis=1))
