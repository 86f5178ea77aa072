"""Writes the format-1 heads of test_quality.py with the engine before issue #13 (commit e5e40d0).

    git archive e5e40d0 attribution | tar -x -C /tmp/old
    .venv/bin/python tests/attribution/data/make_format1_heads.py /tmp/old tests/attribution/data

A linear head (MSP) and a kNN head (kNN score), and their probabilities and scores on ten queries.
"""

import json
import sys

import numpy as np

sys.path.insert(0, sys.argv[1])
from attribution.artifact import FORMAT_VERSION, HeadArtifact, save_head  # noqa: E402
from attribution.heads import KNNHead, LinearProbe  # noqa: E402
from attribution.openset import nearest_neighbours  # noqa: E402

out = sys.argv[2]
assert FORMAT_VERSION == 1
rng = np.random.default_rng(7)
X = np.concatenate([rng.normal(loc, 1.0, size=(12, 6)) for loc in (-1.0, 0.0, 1.0)])
labels = ["real"] * 12 + ["sd14"] * 12 + ["midjourney"] * 12
queries = rng.normal(size=(10, 6)) * 1.5
expected: dict = {"queries": queries.tolist()}
heads = (("linear", LinearProbe(c_grid=[0.01, 1.0, 100.0]), "msp"), ("knn", KNNHead(k_grid=[1, 3, 5]), "knn"))
for name, estimator, method in heads:
    estimator.fit(X, labels)
    artifact = HeadArtifact(
        estimator=estimator,
        classes=list(estimator.classes_),
        backbone_identity="ViT-S-16/random-seed0",
        model_name="ViT-S-16",
        pretrained_tag=None,
        pretrained=False,
        blocks=[8],
        score_method=method,
        threshold=0.5 if method == "msp" else 0.6,
        hyperparameters={"head": name},
        metrics={"accuracy": 0.9},
        reference_ids=[f"{i:064x}" for i in range(len(X))],
        reference_labels=labels,
        reference_features=X,
    )
    save_head(artifact, f"{out}/head-format1-{name}.npz")
    similarity = nearest_neighbours(queries, artifact.reference_features, 1)[0][:, 0].astype(np.float64)
    expected[name] = {
        "probabilities": estimator.predict_proba(queries).tolist(),
        "scores": estimator.decision_scores(queries, method, knn_similarity=similarity).tolist(),
    }
with open(f"{out}/head-format1-expected.json", "w") as handle:
    json.dump(expected, handle, indent=1)
