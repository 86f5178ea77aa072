"""Issue #13: the head chooses C, its open-set score and its block by held-out generators, its solver
converges, and its threshold accepts what it promises on images it has not seen."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.covariance import ledoit_wolf
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from attribution import metrics
from attribution.artifact import HeadArtifact, load_head, save_head
from attribution.blockchoice import choose_blocks
from attribution.build import BackboneInfo, build_head
from attribution.heads import LinearProbe
from attribution.logistic import fit_multinomial
from attribution.openset import GaussianScorer, ledoit_wolf_covariance, open_set_score
from attribution.training import LINEAR_CANDIDATES, TrainConfig, train_head

DATA = Path(__file__).parent / "data"
NAMES = ["real", "gen1", "gen2", "gen3", "gen4"]


def _anisotropic(seed: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Five classes far apart in three low-noise dimensions, close in three noisy ones: every C of
    10^-2..10^4 classifies them perfectly, but how a held-out class scores depends on C."""
    rng = np.random.default_rng(seed)
    sep, std = np.array([12, 12, 12, 0.5, 0.5, 0.5]), np.array([1, 1, 1, 4, 4, 4])
    centres = rng.normal(size=(5, 6)) * sep
    X = np.concatenate([c + rng.normal(size=(per_class, 6)) * std for c in centres])
    return X, np.repeat(NAMES, per_class)


def _clusters(seed: int, per_class: int, dim: int = 32, n_classes: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian clusters (fixed centres; `seed` draws the samples)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(n_classes, dim)) * 0.5
    names = ["real"] + [f"gen{i:02d}" for i in range(1, n_classes)]
    return np.concatenate([c + rng.normal(size=(per_class, dim)) for c in centres]), np.repeat(names, per_class)


def test_it_chooses_c_by_held_out_generators_where_accuracy_cannot_tell() -> None:
    X, y = _anisotropic(5, 30)  # seed 5 of this family: AUROC 0.61 at C = 0.01, 0.52 at C = 10^4
    grid = 10 ** np.linspace(-2, 4, 7)
    logo = LinearProbe(c_grid=grid, coarse_to_fine=False).fit(X, y)
    table = logo.selection_["table"]
    assert len(table) == len(grid) and logo.selection_["criterion_used"] == "logo"
    assert {row["accuracy"] for row in table.values()} == {1.0}  # flat: accuracy cannot choose
    aurocs = {float(c): row["auroc"] for c, row in table.items()}
    assert max(aurocs.values()) - min(aurocs.values()) > 0.05  # the held-out AUROC is not flat
    assert aurocs[logo.C_] == max(aurocs.values())
    by_accuracy = LinearProbe(c_grid=grid, select_by="accuracy").fit(X, y)
    assert aurocs[by_accuracy.C_] < aurocs[logo.C_] - 0.05
    assert logo.selection_["held_out"] == NAMES[1:]  # "real" is never held out


def test_the_coarse_to_fine_sweep_lands_where_the_full_sweep_does() -> None:
    X, y = _clusters(0, 30, dim=16, n_classes=5)
    grid = 10 ** np.linspace(-6, 2, 33)  # the paper's spacing; its largest C values only take longer here
    full = LinearProbe(c_grid=grid, coarse_to_fine=False).fit(X, y)
    fast = LinearProbe(c_grid=grid).fit(X, y)
    assert len(fast.selection_["table"]) < len(full.selection_["table"]) == 33
    assert fast.selection_["chosen"]["auroc"] >= full.selection_["chosen"]["auroc"] - 0.01


def test_it_takes_the_papers_criterion_against_given_unknown_generators() -> None:
    X, y = _clusters(0, 30, dim=16, n_classes=5)
    unknown = np.random.default_rng(3).normal(size=(40, 16))
    probe = LinearProbe(c_grid=[0.01, 1.0, 100.0], select_by="paper").fit(X, y, unknown=unknown)
    assert probe.selection_["criterion_used"] == "paper"
    assert all("auroc" in row for row in probe.selection_["table"].values())
    with pytest.raises(ValueError, match="held-out generators"):
        LinearProbe(select_by="paper").fit(X, y)


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_the_solver_reaches_scikit_learns_optimum(class_weight: str | None) -> None:
    X, y = _clusters(1, 20, dim=12, n_classes=4)
    X, y = X[5:], y[5:]  # unequal classes, so that the weights matter
    classes, y_index = np.unique(y, return_inverse=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = LogisticRegression(C=0.5, tol=1e-12, max_iter=10_000, class_weight=class_weight).fit(X, y_index)
    fits = fit_multinomial(X, y_index, np.ones((1, len(y)), dtype=bool), C=0.5, class_weight=class_weight)
    assert fits.converged
    np.testing.assert_allclose(fits.logits(X)[0], reference.decision_function(X), atol=1e-5)


def test_a_warm_start_gives_the_same_head_and_a_stopped_solver_says_so() -> None:
    X, y = _clusters(2, 20, dim=40, n_classes=4)  # fewer samples than dimensions: the row-span basis
    y_index = np.unique(y, return_inverse=True)[1]
    masks = np.stack([np.ones(len(y), dtype=bool), y_index != 1])
    cold = fit_multinomial(X, y_index, masks, C=3.0)
    warm = fit_multinomial(X, y_index, masks, C=3.0, init=fit_multinomial(X, y_index, masks, C=0.01))
    assert cold.converged and warm.converged
    np.testing.assert_allclose(warm.logits(X), cold.logits(X), atol=1e-4)
    assert np.isneginf(cold.intercept[1, 1])  # the class left out of fit 1 can never be predicted there
    with pytest.warns(ConvergenceWarning, match="stopped after 2 steps"):
        assert not fit_multinomial(X, y_index, masks, C=3.0, max_iter=2).converged


def test_the_final_head_is_the_validated_fit() -> None:
    X, y = _clusters(0, 25, dim=16, n_classes=4)
    probe = LinearProbe(c_grid=[0.1, 1.0, 10.0]).fit(X, y)
    again = LinearProbe(c_grid=[probe.C_]).fit(X, y)  # one C: no sweep, no warm start
    assert probe.converged_ and probe.class_weight == "balanced"
    np.testing.assert_allclose(probe.decision_function(X), again.decision_function(X), atol=1e-6)


def test_log_msp_ranks_what_msp_ties_at_one() -> None:
    logits = np.array([[40.0, 0.0, 0.0], [50.0, 1.0, 0.0], [60.0, 0.0, 0.0], [3.0, 2.0, 1.0]])
    msp = open_set_score("msp", logits=logits)
    assert msp[0] == msp[1] == msp[2] == 1.0  # float64 cannot tell them apart
    log = open_set_score("log_msp", logits=logits)
    assert len(set(log.tolist())) == 4 and log[0] < log[1] < log[2] < 0.0
    np.testing.assert_allclose(log[3], np.log(msp[3]))
    np.testing.assert_array_equal(np.argsort(log[[3, 0, 1, 2]]), [0, 1, 2, 3])


def test_the_threshold_accepts_its_target_share_of_unseen_known_images() -> None:
    X, y = _clusters(0, 60)
    X_test, _ = _clusters(1, 500)  # fresh images of the same known classes
    for score_method in ("log_msp", "auto"):
        result = train_head(X, y, config=TrainConfig(score_method=score_method))
        assert result.metrics["threshold_source"] == "out_of_fold"
        scores = result.estimator.decision_scores(X_test, result.score_method, gaussian=result.gaussian)
        accepted = float(np.mean(scores >= result.threshold))
        assert abs(accepted - 0.95) <= 0.03, (result.score_method, accepted)
        assert result.metrics["known_acceptance_at_threshold"] == pytest.approx(0.95, abs=0.01)


def test_auto_keeps_the_score_with_the_best_held_out_oscr() -> None:
    X, y = _clusters(0, 30, dim=16, n_classes=5)
    result = train_head(X, y, config=TrainConfig(c_grid=[0.1, 1.0]))
    comparison = result.metrics["score_comparison"]
    assert list(comparison) == list(LINEAR_CANDIDATES)
    best = max(row["oscr"] for row in comparison.values())
    assert comparison[result.score_method]["oscr"] == best == result.metrics["oscr"]
    assert result.metrics["score_method"] == result.hyperparameters["score_method"] == result.score_method
    assert result.hyperparameters["select_by"] == "logo" and result.hyperparameters["class_weight"] == "balanced"
    json.dumps(result.metrics)
    pinned = train_head(X, y, config=TrainConfig(c_grid=[0.1, 1.0], score_method="energy"))
    assert pinned.score_method == "energy" and list(pinned.metrics["score_comparison"]) == ["energy"]


def test_the_gaussians_match_a_direct_fit_and_ledoit_wolf() -> None:
    X, y = _clusters(0, 20, dim=10, n_classes=4)
    y_index = np.unique(y, return_inverse=True)[1]
    centred = X - X.mean(axis=0)
    np.testing.assert_allclose(ledoit_wolf_covariance(centred), ledoit_wolf(centred, assume_centered=True)[0])
    for g, scorer in zip([1, 3], GaussianScorer.fit_leaving_out(X, y_index, 4, [1, 3]), strict=True):
        direct = GaussianScorer.fit(X[y_index != g], y_index[y_index != g], 4)
        for relative in (False, True):
            np.testing.assert_allclose(scorer.score(X, relative), direct.score(X, relative), rtol=1e-9, atol=1e-9)


def test_a_mahalanobis_head_round_trips_without_pickle(tmp_path: Path) -> None:
    X, y = _clusters(0, 20, dim=10, n_classes=4)
    result = train_head(X, y, config=TrainConfig(c_grid=[1.0], score_method="relative_mahalanobis"))
    assert result.gaussian is not None
    artifact = HeadArtifact(
        estimator=result.estimator,
        classes=list(result.estimator.classes_),
        backbone_identity="ViT-S-16/random-seed0",
        model_name="ViT-S-16",
        pretrained_tag=None,
        pretrained=False,
        blocks=[3, 7],
        score_method=result.score_method,
        threshold=result.threshold,
        feature_join="l2",
        gaussian=result.gaussian,
    )
    save_head(artifact, tmp_path / "head.npz")
    loaded = load_head(tmp_path / "head.npz")
    assert loaded.feature_join == "l2" and loaded.gaussian is not None and loaded.format_version == 2
    np.testing.assert_array_equal(loaded.scores(X), artifact.scores(X))
    prepared = loaded.prepare(X)
    np.testing.assert_allclose(np.linalg.norm(prepared[:, :5], axis=1), 1.0)
    with pytest.raises(ValueError, match="Gaussians"):
        HeadArtifact(**{**vars(artifact), "gaussian": None})


@pytest.mark.parametrize("kind", ["linear", "knn"])
def test_a_format_1_head_still_loads_and_gives_the_same_verdicts(kind: str) -> None:
    """Heads written by the code before this change (tests/attribution/data/make_format1_heads.py)."""
    expected = json.loads((DATA / "head-format1-expected.json").read_text())
    head = load_head(DATA / f"head-format1-{kind}.npz")
    assert head.format_version == 1 and head.feature_join == "concat" and head.gaussian is None
    queries = np.asarray(expected["queries"])
    np.testing.assert_allclose(head.estimator.predict_proba(queries), expected[kind]["probabilities"], rtol=1e-12)
    from attribution.openset import nearest_neighbours

    similarity = nearest_neighbours(queries, head.reference_features, 1)[0][:, 0].astype(np.float64)
    np.testing.assert_allclose(head.scores(queries, knn_similarity=similarity), expected[kind]["scores"], rtol=1e-12)
    if kind == "linear":
        assert head.estimator.get_params()["class_weight"] is None


def _blocks(seed: int = 0) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Block 2 separates five classes; blocks 0, 1 and 3 are noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat(NAMES, 16)
    centres = rng.normal(size=(5, 12)) * 2.0
    informative = centres[np.repeat(np.arange(5), 16)] + rng.normal(size=(80, 12))
    by_block = {b: rng.normal(size=(80, 12)) for b in (0, 1, 3)} | {2: informative}
    return by_block, y


def test_it_chooses_the_informative_block() -> None:
    by_block, y = _blocks()
    choice = choose_blocks(by_block, y)
    assert 2 in choice.blocks and choice.candidates[0]["blocks"] == choice.blocks
    singles = {tuple(row["blocks"]): row["oscr"] for row in choice.candidates if len(row["blocks"]) == 1}
    assert singles[(2,)] == max(singles.values())
    assert {len(row["blocks"]) for row in choice.candidates} == {1, 2, 3}
    assert all(row["feature_join"] == "l2" for row in choice.candidates if len(row["blocks"]) > 1)


def test_build_head_with_auto_blocks_records_them_in_the_artifact(tmp_path: Path) -> None:
    by_block, y = _blocks()
    ids = [f"{i:064x}" for i in range(len(y))]
    backbone = BackboneInfo(identity="ViT-S-16/random-seed0", model_name="ViT-S-16", pretrained=False)
    built = build_head(by_block, list(y), sample_ids=ids, backbone=backbone, blocks="auto", sweep=False)
    artifact = built.artifact
    assert 2 in artifact.blocks and built.blocks == artifact.blocks == built.metrics["blocks"]
    assert built.metrics["block_choice"]["blocks"] == artifact.blocks
    assert artifact.score_method == built.metrics["score_method"] != "auto"
    save_head(artifact, tmp_path / "head.npz")
    loaded = load_head(tmp_path / "head.npz")
    assert loaded.blocks == artifact.blocks and loaded.feature_join == artifact.feature_join
    with pytest.raises(ValueError, match="auto"):
        build_head(by_block, list(y), sample_ids=ids, backbone=backbone, blocks="best")


def test_oscr_of_any_score_matches_oscr_of_probabilities() -> None:
    rng = np.random.default_rng(0)
    known, unknown = rng.dirichlet(np.ones(4), 50), rng.dirichlet(np.ones(4), 30)
    labels = rng.integers(0, 4, 50)
    expected = metrics.oscr(known, labels, unknown)
    got = metrics.oscr_scores(known.max(axis=1), known.argmax(axis=1) == labels, unknown.max(axis=1))
    assert got == expected


def test_evaluate_reports_the_auto_blocks_and_the_papers_criterion_on_its_test_split() -> None:
    from attribution.evaluate import _auto, _config, _score_block, _Split

    by_block, y = _blocks()
    extra = np.random.default_rng(5).normal(size=(32, 12)) + 3.0  # two unseen generators, 16 images each
    features = {b: np.concatenate([f, extra]) for b, f in by_block.items()}
    labels = np.concatenate([y, np.repeat(["unseen1", "unseen2"], 16)])
    rows = np.arange(80).reshape(5, 16)
    split = _Split(
        train={name: rows[i, :11] for i, name in enumerate(NAMES)},
        known_test=rows[:, 11:].ravel(),
        unknown_test=np.arange(80, 96),
    )
    train = rows[:, :11].ravel()
    config = _config("linear", "logo", "auto", None, [0.01, 1.0, 100.0], 0, 0.95, "real")
    auto = _auto(config, features, labels, split, np.arange(96, 112), None)
    assert 2 in auto["blocks"] and auto["feature_join"] in ("concat", "l2")
    for key in ("accuracy", "auroc", "oscr", "select_by", "score_method", "C", "threshold"):
        assert key in auto, key
    assert 0.0 <= auto["known_acceptance_at_threshold"] <= 1.0 and 0.0 <= auto["unknown_rejection_at_threshold"] <= 1.0
    paper = _config("linear", "paper", "msp", ["unseen2"], [0.01, 1.0, 100.0], 0, 0.95, "real")
    block = _score_block(paper, features[2], labels, train, split, np.arange(96, 112))
    assert block["select_by"] == "paper" and block["score_method"] == "msp"
    assert block["hyperparameters"]["criterion_used"] == "paper" and block["accuracy"] > 0.8
