"""Open-set scores, threshold calibration and cosine neighbours against direct formulas."""

from __future__ import annotations

import numpy as np
import pytest

from attribution import openset
from attribution.openset import (
    calibrate_threshold,
    l2_normalize,
    max_cosine_similarity,
    nearest_neighbours,
    open_set_score,
)

LOGITS = np.array([[2.0, 0.0, -1.0], [0.5, 0.4, 0.3], [-3.0, 5.0, 1.0]])


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_it_scores_msp_from_logits_or_probabilities() -> None:
    expected = _softmax(LOGITS).max(axis=1)
    np.testing.assert_allclose(open_set_score("msp", logits=LOGITS), expected)
    np.testing.assert_allclose(open_set_score("msp", probs=_softmax(LOGITS)), expected)
    # MSP ignores a shift of all logits; max logit follows it.
    np.testing.assert_allclose(open_set_score("msp", logits=LOGITS + 7.0), expected)
    np.testing.assert_allclose(open_set_score("max_logit", logits=LOGITS + 7.0), [9.0, 7.5, 12.0])


def test_it_scores_energy_as_logsumexp() -> None:
    np.testing.assert_allclose(open_set_score("energy", logits=LOGITS), np.log(np.exp(LOGITS).sum(axis=1)))
    # Stable for large logits, where exp overflows.
    assert open_set_score("energy", logits=np.array([[1000.0, 1000.0]]))[0] == pytest.approx(1000 + np.log(2))


def test_it_passes_the_knn_similarity_through() -> None:
    np.testing.assert_array_equal(open_set_score("knn", knn_similarity=np.array([0.3, 0.9])), [0.3, 0.9])


@pytest.mark.parametrize(
    ("method", "inputs"),
    [
        ("msp", {}),
        ("max_logit", {"probs": LOGITS}),
        ("energy", {}),
        ("knn", {"logits": LOGITS}),
        ("odin", {}),
    ],
)
def test_it_refuses_a_score_without_its_inputs(method: str, inputs: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match=method):
        open_set_score(method, **inputs)


def test_it_calibrates_the_threshold_by_hand() -> None:
    scores = np.arange(1, 21, dtype=float)
    assert calibrate_threshold(scores, tpr=0.95) == 1.0  # floor(0.05 * 19) = 0: the lowest
    assert calibrate_threshold(scores, tpr=0.5) == 10.0  # floor(0.5 * 19) = 9
    assert calibrate_threshold(scores, tpr=1.0) == 1.0
    with pytest.raises(ValueError):
        calibrate_threshold(np.array([]))
    with pytest.raises(ValueError):
        calibrate_threshold(scores, tpr=0.0)


@pytest.mark.parametrize("n", [1, 7, 20, 101, 1000])
@pytest.mark.parametrize("tpr", [0.5, 0.9, 0.95, 0.99])
def test_it_accepts_at_least_the_target_rate(n: int, tpr: float) -> None:
    scores = np.random.default_rng(n).normal(size=n)
    threshold = calibrate_threshold(scores, tpr)
    assert threshold in scores
    assert np.mean(scores >= threshold) >= tpr


def test_it_normalises_rows_and_keeps_zero_rows_zero() -> None:
    normalised = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(normalised, [[0.6, 0.8], [0.0, 0.0]])
    assert normalised.dtype == np.float32


@pytest.mark.parametrize("exclude_self", [False, True])
def test_it_finds_the_same_neighbours_as_brute_force(
    monkeypatch: pytest.MonkeyPatch, exclude_self: bool
) -> None:
    monkeypatch.setattr(openset, "_CHUNK", 7)  # several chunks, so the offsets are exercised
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(30, 16))
    queries = reference if exclude_self else rng.normal(size=(23, 16))
    similarities, indices = nearest_neighbours(queries, reference, 5, exclude_self=exclude_self)

    cosine = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
        reference / np.linalg.norm(reference, axis=1, keepdims=True)
    ).T
    np.testing.assert_allclose(max_cosine_similarity(queries, reference), cosine.max(axis=1), rtol=1e-5)
    if exclude_self:
        np.fill_diagonal(cosine, -np.inf)
    expected = np.argsort(-cosine, axis=1)[:, :5]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(similarities, np.take_along_axis(cosine, expected, axis=1), rtol=1e-5)
    assert np.all(np.diff(similarities, axis=1) <= 0)


def test_it_clips_k_to_the_reference_size() -> None:
    similarities, indices = nearest_neighbours(np.eye(3), np.eye(3), 10, exclude_self=True)
    assert indices.shape == (3, 2)
    assert not np.any(indices == np.arange(3)[:, None])
    with pytest.raises(ValueError):
        nearest_neighbours(np.eye(1), np.eye(1), 1, exclude_self=True)
