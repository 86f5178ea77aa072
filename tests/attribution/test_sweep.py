"""The per-block sweep on seeded Gaussian clusters: the batched logistic regressions against
scikit-learn's, and the sweep's figures against the head's own cross-validation (`train_head`)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.linear_model import LogisticRegression

from attribution.sweep import BlockScore, fit_logistic_regressions, sweep_blocks
from attribution.training import TrainConfig, train_head


def _clusters(per_class: int, n_classes: int, dim: int, *, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One Gaussian cluster per class around a common offset (as CLS tokens share one), labels 0..K-1."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * spread + rng.normal(size=dim) * 5
    X = np.concatenate([c + rng.normal(size=(per_class, dim)) for c in centres])
    return X, np.repeat(np.arange(n_classes), per_class)


def _blocks(seed: int = 0, dim: int = 64) -> tuple[dict[int, np.ndarray], list[str]]:
    """Four "blocks" of the same 4 x 12 samples, from noise (block 0) to well separated (block 3)."""
    features = {}
    for block, spread in enumerate([0.0, 0.3, 0.6, 1.2]):
        X, y = _clusters(12, 4, dim, spread=spread, seed=seed)
        features[block] = X.astype(np.float32)
    names = ["real", "gen-a", "gen-b", "gen-c"]
    return features, [names[i] for i in y]


@pytest.mark.parametrize("dim", [8, 48])  # more samples than dimensions, and fewer (the projected path)
def test_it_fits_the_same_logistic_regressions_as_scikit_learn(dim: int) -> None:
    X0, y = _clusters(10, 3, dim, spread=0.8, seed=1)
    X1, _ = _clusters(10, 3, dim, spread=0.3, seed=2)
    masks = np.ones((3, len(y)), dtype=bool)
    masks[0, ::3] = False  # a fold's training samples
    masks[1, y == 2] = False  # class 2 held out: no column for it
    masks[2, 1::2] = False
    for C in (0.05, 1.0):
        logits = fit_logistic_regressions(np.stack([X0, X1]), y, masks, C=C)
        assert logits.shape == (2, 3, len(y), 3)
        for b, X in enumerate((X0, X1)):
            for q, mask in enumerate(masks):
                reference = LogisticRegression(C=C, max_iter=5000, tol=1e-6).fit(X[mask], y[mask])
                present = reference.classes_
                assert np.all(np.isneginf(np.delete(logits[b, q], present, axis=1)))
                ours = softmax(logits[b, q][:, present], axis=1)
                np.testing.assert_allclose(ours, reference.predict_proba(X), atol=2e-3)


def test_it_sweeps_every_block_and_finds_the_separable_one() -> None:
    features, labels = _blocks()
    start = time.perf_counter()
    scores = sweep_blocks(features, labels, C=1.0)
    print(f"sweep of 4 blocks x 48 samples: {time.perf_counter() - start:.3f} s")
    assert [score.block for score in scores] == [0, 1, 2, 3]
    assert all(isinstance(score, BlockScore) and score.auroc is None for score in scores)
    accuracies = [score.accuracy for score in scores]
    assert accuracies[0] < 0.5 < accuracies[1] < accuracies[3] == 1.0  # chance is 0.25
    assert all(0.0 <= score.macro_f1 <= 1.0 for score in scores)
    json.dumps([score.as_dict() for score in scores])  # stored with the head: plain JSON


def test_each_block_scores_what_the_head_would_score_on_it() -> None:
    """Same C, same folds, same held-out generators: at every block the sweep agrees with `train_head`."""
    features, labels = _blocks(seed=3)
    C = 0.5
    scores = sweep_blocks(features, labels, C=C, open_set=True)
    for score in scores:
        head = train_head(features[score.block], labels, config=TrainConfig(c_grid=[C], score_method="msp")).metrics
        if score.block == 0:
            # Pure noise: which class a sample lands in is decided by the two solvers' last digits (the head's
            # own L-BFGS to 1e-8, the sweep's scipy run), and both must simply be at chance (0.25).
            assert score.accuracy <= 0.5 and head["accuracy"] <= 0.5
            continue
        assert score.accuracy == pytest.approx(head["accuracy"])
        assert score.macro_f1 == pytest.approx(head["macro_f1"])
        assert score.auroc == pytest.approx(head["auroc"], abs=0.02)


def test_it_refuses_a_class_of_one_sample() -> None:
    features, labels = _blocks()
    with pytest.raises(ValueError, match="two samples or more"):
        sweep_blocks({0: features[0][:37]}, labels[:37])  # "gen-c" keeps a single sample
    with pytest.raises(ValueError, match="same samples"):
        sweep_blocks({0: features[0][:10]}, labels)
