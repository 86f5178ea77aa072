"""train_head on seeded Gaussian clusters: metrics, held-out generators, threshold, progress, cancel."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from attribution.heads import KNNHead, LinearProbe
from attribution.openset import calibrate_threshold
from attribution.training import TrainConfig, TrainingCancelled, train_head


def _clusters(per_class: list[int], dim: int, *, spread: float = 0.3, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """One Gaussian cluster per class; the first class is "real", the others "gen01", "gen02", ..."""
    rng = np.random.default_rng(seed)
    names = ["real"] + [f"gen{i:02d}" for i in range(1, len(per_class))]
    centres = rng.normal(size=(len(per_class), dim)) * spread
    X = np.concatenate([c + rng.normal(size=(n, dim)) for c, n in zip(centres, per_class, strict=True)])
    return X, [name for name, n in zip(names, per_class, strict=True) for _ in range(n)]


def test_it_trains_and_measures_a_linear_probe_on_ten_classes() -> None:
    X, labels = _clusters([50] * 10, 384, spread=0.25)
    steps: list[tuple[str, float]] = []
    start, cpu = time.perf_counter(), time.process_time()
    result = train_head(X, labels, progress=lambda step, fraction: steps.append((step, fraction)))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"train_head, 10 classes x 50 x 384: {wall:.2f} s wall, {cpu:.2f} s CPU")

    metrics = result.metrics
    assert result.head_kind == "linear" and isinstance(result.estimator, LinearProbe)
    assert metrics["accuracy"] > 0.9 and metrics["macro_f1"] > 0.9
    assert metrics["cv_folds"] == 5
    assert set(metrics["per_class_recall"]) == set(labels)
    confusion = np.array(metrics["confusion"]["matrix"])
    assert confusion.sum() == 500 and metrics["confusion"]["labels"] == sorted(set(labels))
    assert np.trace(confusion) / 500 == pytest.approx(metrics["accuracy"])
    # Every generator is held out in turn, never "real".
    assert sorted(metrics["per_holdout"]) == [f"gen{i:02d}" for i in range(1, 10)]
    assert all(run["n_unknown"] == 50 for run in metrics["per_holdout"].values())
    assert metrics["auroc"] > 0.7
    assert metrics["auroc"] == pytest.approx(np.mean([r["auroc"] for r in metrics["per_holdout"].values()]))
    assert 0.0 < metrics["oscr"] <= 1.0
    assert metrics["threshold_source"] == "out_of_fold" and metrics["threshold_tpr"] == 0.95
    assert 0.0 < metrics["unknown_rejection_at_threshold"] <= 1.0
    assert metrics["known_acceptance_at_threshold"] >= 0.95
    assert metrics["score_method"] == result.score_method and metrics["score_selection"] == "auto"
    assert set(metrics["score_comparison"]) >= {"msp", "log_msp", "max_logit", "energy", "knn", "mahalanobis"}
    assert result.hyperparameters | {"C": None} == {
        "head": "linear",
        "C": None,
        "select_by": "logo",
        "criterion_used": "logo",
        "selection_metric": "oscr",
        "class_weight": "balanced",
        "tol": result.estimator.tol,
        "converged": True,
        "score_method": result.score_method,
        "score_selection": "auto",
    }
    assert result.hyperparameters["C"] == result.estimator.C_ == metrics["C"]
    json.dumps(metrics)  # stored with the head: plain JSON

    assert [step for step, _ in steps] == ["fit", "cross_validation"] + ["holdout"] * 9 + ["done"]
    fractions = [fraction for _, fraction in steps]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0


def test_it_calibrates_the_threshold_on_held_out_known_scores() -> None:
    X, labels = _clusters([12] * 4, 16, spread=0.5, seed=1)
    loose = train_head(X, labels, config=TrainConfig(tpr=0.5, c_grid=[0.1, 1.0], cv_folds=3))
    strict = train_head(X, labels, config=TrainConfig(tpr=0.99, c_grid=[0.1, 1.0], cv_folds=3))
    assert strict.threshold <= loose.threshold
    assert strict.metrics["unknown_rejection_at_threshold"] <= loose.metrics["unknown_rejection_at_threshold"]


def test_it_takes_knn_when_a_class_is_small() -> None:
    X, labels = _clusters([10, 10, 3], 8, spread=1.0)
    result = train_head(X, labels)
    assert result.head_kind == "knn" and isinstance(result.estimator, KNNHead)
    assert result.metrics["cv_folds"] == 3
    assert result.hyperparameters["head"] == "knn" and result.hyperparameters["k"] == result.estimator.k_
    assert train_head(X, labels, config=TrainConfig(head="linear", c_grid=[1.0])).head_kind == "linear"


@pytest.mark.parametrize(
    "score_method", ["msp", "log_msp", "max_logit", "energy", "knn", "mahalanobis", "relative_mahalanobis"]
)
def test_it_scores_held_out_generators_with_each_method(score_method: str) -> None:
    X, labels = _clusters([15] * 4, 16, spread=0.8, seed=2)
    result = train_head(X, labels, config=TrainConfig(score_method=score_method, c_grid=[0.01, 1.0]))
    assert result.metrics["score_method"] == score_method
    assert all(0.0 <= run["auroc"] <= 1.0 for run in result.metrics["per_holdout"].values())
    assert np.isfinite(result.threshold)


def test_it_holds_out_real_only_when_asked() -> None:
    X, labels = _clusters([8] * 3, 8, spread=1.0)
    result = train_head(X, labels, config=TrainConfig(hold_out_real=True, c_grid=[1.0]))
    assert sorted(result.metrics["per_holdout"]) == ["gen01", "gen02", "real"]


def test_it_skips_hold_outs_with_two_classes_and_calibrates_on_cross_validation() -> None:
    X, labels = _clusters([10, 10], 8, spread=1.0)
    result = train_head(X, labels, config=TrainConfig(c_grid=[1.0]))
    metrics = result.metrics
    assert metrics["auroc"] is None and metrics["oscr"] is None and metrics["open_set_skipped"]
    assert metrics["threshold_source"] == "out_of_fold" and metrics["accuracy"] is not None


def test_it_reports_no_closed_set_metrics_for_a_single_sample_class() -> None:
    X, labels = _clusters([6, 6, 1], 8, spread=1.0)
    result = train_head(X, labels)
    metrics = result.metrics
    assert metrics["accuracy"] is None and "single sample" in metrics["closed_set_skipped"]
    assert metrics["threshold_source"] == "training"
    scores = result.estimator.decision_scores(X, result.score_method, gaussian=result.gaussian)
    assert result.threshold == calibrate_threshold(scores, 0.95)


def test_it_names_misclassified_samples_by_their_ids() -> None:
    X, labels = _clusters([12] * 3, 8, spread=0.3, seed=4)  # overlapping: some mistakes
    ids = [f"{i:064x}" for i in range(len(labels))]
    result = train_head(X, labels, sample_ids=ids, config=TrainConfig(c_grid=[1.0]))
    wrong = result.metrics["misclassified"]
    assert len(wrong) == round((1 - result.metrics["accuracy"]) * len(labels)) > 0
    for entry in wrong:
        index = ids.index(entry["sample_id"])
        assert entry["label"] == labels[index] != entry["predicted"]


def test_it_stops_between_steps_when_asked() -> None:
    X, labels = _clusters([8] * 4, 8, spread=1.0)
    asked: list[int] = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) >= 3  # let "fit" and "cross_validation" run, stop before the first hold-out

    steps: list[str] = []
    with pytest.raises(TrainingCancelled, match="holdout"):
        train_head(
            X,
            labels,
            config=TrainConfig(c_grid=[1.0]),
            progress=lambda s, f: steps.append(s),
            should_stop=should_stop,
        )
    assert steps == ["fit", "cross_validation"]
    with pytest.raises(TrainingCancelled, match="fit"):
        train_head(X, labels, should_stop=lambda: True)


def test_it_refuses_bad_input() -> None:
    X, labels = _clusters([5, 5], 4)
    with pytest.raises(ValueError, match="same samples"):
        train_head(X[:-1], labels)
    with pytest.raises(ValueError, match="same samples"):
        train_head(X, labels, sample_ids=["a"])
    with pytest.raises(ValueError, match="2 classes"):
        train_head(X, ["real"] * 10)
    with pytest.raises(ValueError, match="score method"):
        train_head(X, labels, config=TrainConfig(score_method="odin"))
    with pytest.raises(ValueError, match="head"):
        train_head(X, labels, config=TrainConfig(head="svm"))  # type: ignore[arg-type]
