"""Metrics against hand-computed cases and against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, recall_score, roc_auc_score

from attribution import metrics


def _labels(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    classes = np.array(["real", "sd14", "midjourney", "vqdm"])
    y_true = classes[rng.integers(0, 4, n)]
    # 70% right, else a random class among the first three (so "vqdm" is under-predicted).
    y_pred = np.where(rng.random(n) < 0.7, y_true, classes[rng.integers(0, 3, n)])
    return y_true, y_pred


def test_it_counts_accuracy_by_hand() -> None:
    assert metrics.accuracy(["a", "b", "b", "c"], ["a", "b", "c", "a"]) == 0.5
    with pytest.raises(ValueError):
        metrics.accuracy([1, 2], [1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_it_matches_sklearn_on_closed_set_metrics(seed: int) -> None:
    y_true, y_pred = _labels(seed)
    labels = ["midjourney", "real", "sd14", "vqdm"]
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(np.mean(y_true == y_pred))
    assert metrics.macro_f1(y_true, y_pred) == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    np.testing.assert_array_equal(
        metrics.confusion(y_true, y_pred, labels), confusion_matrix(y_true, y_pred, labels=labels)
    )
    recall = recall_score(y_true, y_pred, labels=labels, average=None)
    assert metrics.per_class_recall(y_true, y_pred, labels) == pytest.approx(
        dict(zip(labels, recall, strict=True))
    )


def test_it_builds_the_confusion_matrix_with_true_labels_as_rows() -> None:
    matrix = metrics.confusion(["a", "a", "b"], ["b", "b", "b"], labels=["a", "b"])
    assert matrix.tolist() == [[0, 2], [0, 1]]
    assert matrix.dtype.kind == "i"


def test_it_gives_zero_f1_and_recall_to_a_class_never_right() -> None:
    # Class "c" is never true and never predicted: F1 0 (sklearn's zero_division=0 when labels are forced).
    assert metrics.macro_f1(["a", "b"], ["a", "b"], labels=["a", "b", "c"]) == pytest.approx(2 / 3)
    assert metrics.per_class_recall(["a", "b"], ["a", "a"], labels=["a", "b", "c"]) == {
        "a": 1.0,
        "b": 0.0,
        "c": 0.0,
    }


def test_it_computes_auroc_by_hand() -> None:
    assert metrics.auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert metrics.auroc([0.1, 0.2], [0.9, 0.8]) == 0.0
    assert metrics.auroc([0.5, 0.5], [0.5]) == 0.5  # ties count one half
    # Pairs (known, unknown): (3, 2) win, (3, 4) lose, (1, 2) lose, (1, 4) lose -> 1/4.
    assert metrics.auroc([3, 1], [2, 4]) == 0.25
    with pytest.raises(ValueError):
        metrics.auroc([], [0.1])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_it_matches_sklearn_roc_auc_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    known = np.round(rng.normal(1.0, 1.0, 57), 1)  # rounding makes ties
    unknown = np.round(rng.normal(0.0, 1.0, 31), 1)
    expected = roc_auc_score(np.r_[np.ones(57), np.zeros(31)], np.r_[known, unknown])
    assert metrics.auroc(known, unknown) == pytest.approx(expected)


def test_it_gives_oscr_one_for_perfect_separation_and_all_correct() -> None:
    known = np.array([[0.9, 0.1], [0.2, 0.8]])
    unknown = np.array([[0.6, 0.4], [0.45, 0.55]])
    assert metrics.oscr(known, [0, 1], unknown) == 1.0


def test_it_gives_oscr_zero_when_every_known_sample_is_wrong() -> None:
    known = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert metrics.oscr(known, [1, 0], np.array([[0.5, 0.5]])) == 0.0


def test_it_gives_oscr_zero_when_unknowns_outscore_every_known_sample() -> None:
    known = np.array([[0.6, 0.4], [0.4, 0.6]])
    unknown = np.array([[0.99, 0.01], [0.05, 0.95]])
    assert metrics.oscr(known, [0, 1], unknown) == 0.0


def test_it_computes_oscr_of_three_known_and_two_unknown_by_hand() -> None:
    # Known: scores 0.9 (right), 0.7 (wrong: argmax 1, label 0), 0.6 (right). Unknown: 0.8, 0.5.
    # Threshold 0.9: CCR 1/3, FPR 0;   0.8: CCR 1/3, FPR 1/2;   0.7: same (wrong sample);
    #           0.6: CCR 2/3, FPR 1/2; 0.5: CCR 2/3, FPR 1.
    # Curve (0,0) (0,1/3) (1/2,1/3) (1/2,2/3) (1,2/3): area 1/2 * 1/3 + 1/2 * 2/3 = 1/2.
    known = np.array([[0.9, 0.1], [0.3, 0.7], [0.4, 0.6]])
    unknown = np.array([[0.8, 0.2], [0.5, 0.5]])
    assert metrics.oscr(known, [0, 0, 1], unknown) == pytest.approx(0.5)


def test_it_keeps_oscr_below_accuracy() -> None:
    rng = np.random.default_rng(0)
    known = rng.dirichlet(np.ones(4), 80)
    labels = rng.integers(0, 4, 80)
    value = metrics.oscr(known, labels, rng.dirichlet(np.ones(4), 40))
    assert 0.0 <= value <= metrics.accuracy(labels, known.argmax(axis=1))


def test_it_measures_tnr_at_tpr_by_hand() -> None:
    known = np.arange(1, 21, dtype=float)  # threshold accepting 95% of 20: the lowest score, 1.0
    assert metrics.tnr_at_tpr(known, [0.5, 1.5, 30.0], tpr=0.95) == pytest.approx(1 / 3)
    # At TPR 0.5 the threshold is the 10th lowest known score (10.0): 0.5, 1.5 rejected.
    assert metrics.tnr_at_tpr(known, [0.5, 1.5, 30.0], tpr=0.5) == pytest.approx(2 / 3)
