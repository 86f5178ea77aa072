"""A trained head and everything needed to trust it later, saved as one `.npz` file without pickle.

The file holds the arrays (logistic-regression weights or kNN features, reference features for evidence)
and one JSON string of metadata; `np.load(..., allow_pickle=False)` reads it, so opening a head file
never runs code. `load_head` refuses a head trained on features of another backbone.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from attribution.heads import KNNHead, LinearProbe
from attribution.openset import FEATURE_JOINS, GAUSSIAN_METHODS, SCORE_METHODS, GaussianScorer, l2_join, l2_normalize

if TYPE_CHECKING:
    from attribution.backbone import Backbone

# 2 adds `feature_join`, the Gaussians of the Mahalanobis scores and the probe's selection record;
# files of version 1 still load, and score as they did.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class HeadMismatchError(ValueError):
    """The head was trained on features of another backbone than the one it is used with."""


@dataclass
class HeadArtifact:
    """A fitted head with its provenance; `reference_features [N, D]` are stored L2-normalised float16.

    `blocks` are the 0-based transformer blocks whose CLS features the head reads, joined by
    `feature_join`: "concat" (raw, every head of format 1) or "l2" (each block L2-normalised first);
    `prepare` turns the raw concatenation into the head's input. `gaussian` holds the class Gaussians
    of a Mahalanobis score (None otherwise)."""

    estimator: LinearProbe | KNNHead
    classes: list[str]
    backbone_identity: str
    model_name: str
    pretrained_tag: str | None  # the open_clip tag, "sha256:<hex>" of a checkpoint, or None (random)
    pretrained: bool
    blocks: list[int]
    score_method: str
    threshold: float
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    reference_ids: list[str] = field(default_factory=list)  # sha256 of the training images
    reference_labels: list[str] = field(default_factory=list)
    reference_features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float16))
    feature_join: str = "concat"
    gaussian: GaussianScorer | None = None
    format_version: int = FORMAT_VERSION
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        self.classes = [str(c) for c in self.classes]
        if self.classes != [str(c) for c in self.estimator.classes_]:
            raise ValueError(f"classes {self.classes} differ from the estimator's {list(self.estimator.classes_)}")
        if self.score_method not in SCORE_METHODS:
            raise ValueError(f"unknown score method {self.score_method!r}; expected one of {SCORE_METHODS}")
        if self.score_method == "knn" and self.head_kind == "linear" and not len(self.reference_features):
            raise ValueError("the knn score of a linear head needs reference features to compare with")
        if self.score_method in GAUSSIAN_METHODS and self.gaussian is None:
            raise ValueError(f"the {self.score_method!r} score needs the head's Gaussians (gaussian=...)")
        if self.feature_join not in FEATURE_JOINS:
            raise ValueError(f"unknown feature join {self.feature_join!r}; expected one of {FEATURE_JOINS}")
        self.blocks = [int(b) for b in self.blocks]
        features = np.asarray(self.reference_features)
        if features.size:
            features = l2_normalize(features)
        self.reference_features = features.astype(np.float16)
        if not len(self.reference_ids) == len(self.reference_labels) == len(self.reference_features):
            raise ValueError(
                f"{len(self.reference_ids)} reference ids, {len(self.reference_labels)} labels and "
                f"{len(self.reference_features)} feature rows: they must match"
            )

    @property
    def head_kind(self) -> str:
        """ "linear" or "knn"."""
        return "linear" if isinstance(self.estimator, LinearProbe) else "knn"

    def prepare(self, features: np.ndarray) -> np.ndarray:
        """The head's input `[N, D]` from the raw concatenation of its blocks' features `[N, D]`
        (`concat_blocks(features, self.blocks)`)."""
        if self.feature_join == "l2":
            return l2_join(features, len(self.blocks))
        return np.asarray(features)

    def scores(self, features: np.ndarray, *, knn_similarity: np.ndarray | None = None) -> np.ndarray:
        """The head's open-set scores `[N]` of prepared features `[N, D]` (`knn_similarity [N]`: the
        largest similarity to the reference features, for a linear head's `knn` score)."""
        return self.estimator.decision_scores(
            features, self.score_method, knn_similarity=knn_similarity, gaussian=self.gaussian
        )


def save_head(artifact: HeadArtifact, path: str | Path) -> None:
    """Write `artifact` to `path` as one compressed `.npz` (atomically: a reader never sees half a file)."""
    estimator = artifact.estimator
    arrays: dict[str, np.ndarray] = {"reference_features": artifact.reference_features}
    learned: dict[str, Any]
    if isinstance(estimator, LinearProbe):
        arrays |= {"coef": estimator.coef_, "intercept": estimator.intercept_}
        learned = {
            "C_": estimator.C_,
            "selection_scores_": list(estimator.selection_scores_.items()),
            "selection_": getattr(estimator, "selection_", None),
            "converged_": getattr(estimator, "converged_", None),
            "n_iter_": getattr(estimator, "n_iter_", None),
        }
    else:
        arrays |= {"knn_X": estimator.X_, "knn_y": estimator.y_}
        learned = {"k_": estimator.k_}
    metadata = {
        "format_version": artifact.format_version,
        "head": artifact.head_kind,
        "estimator_params": estimator.get_params(),
        "estimator_learned": learned,
        "n_features_in": int(estimator.n_features_in_),
        "classes": artifact.classes,
        "backbone_identity": artifact.backbone_identity,
        "model_name": artifact.model_name,
        "pretrained_tag": artifact.pretrained_tag,
        "pretrained": artifact.pretrained,
        "blocks": artifact.blocks,
        "score_method": artifact.score_method,
        "threshold": float(artifact.threshold),
        "hyperparameters": artifact.hyperparameters,
        "metrics": artifact.metrics,
        "reference_ids": list(artifact.reference_ids),
        "reference_labels": [str(label) for label in artifact.reference_labels],
        "created_at": artifact.created_at,
    }
    metadata["feature_join"] = artifact.feature_join
    metadata["gaussian"] = artifact.gaussian is not None
    if artifact.gaussian is not None:
        arrays |= artifact.gaussian.arrays()
    arrays["metadata"] = np.array(json.dumps(metadata, default=_json_default))
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            np.savez_compressed(handle, allow_pickle=False, **arrays)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_head(
    path: str | Path, *, backbone: Backbone | None = None, backbone_identity: str | None = None
) -> HeadArtifact:
    """Read a head written by `save_head`. With `backbone` (or its `backbone_identity`), raise
    `HeadMismatchError` unless the head was trained on that backbone's features."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    metadata = json.loads(str(arrays.pop("metadata")))
    version = metadata.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(
            f"{path}: head format version {version} is not supported (this code reads {READABLE_VERSIONS})"
        )
    expected = backbone.identity if backbone is not None else backbone_identity
    if expected is not None and expected != metadata["backbone_identity"]:
        raise HeadMismatchError(
            f"the head in {path} was trained on backbone {metadata['backbone_identity']!r}, "
            f"but the backbone in use is {expected!r}"
        )
    return HeadArtifact(
        estimator=_rebuild_estimator(metadata, arrays),
        classes=metadata["classes"],
        backbone_identity=metadata["backbone_identity"],
        model_name=metadata["model_name"],
        pretrained_tag=metadata["pretrained_tag"],
        pretrained=metadata["pretrained"],
        blocks=metadata["blocks"],
        score_method=metadata["score_method"],
        threshold=metadata["threshold"],
        hyperparameters=metadata["hyperparameters"],
        metrics=metadata["metrics"],
        reference_ids=metadata["reference_ids"],
        reference_labels=metadata["reference_labels"],
        reference_features=arrays["reference_features"],
        feature_join=metadata.get("feature_join", "concat"),
        gaussian=GaussianScorer.from_arrays(arrays) if metadata.get("gaussian") else None,
        format_version=version,
        created_at=metadata["created_at"],
    )


def _rebuild_estimator(metadata: dict[str, Any], arrays: dict[str, np.ndarray]) -> LinearProbe | KNNHead:
    learned = metadata["estimator_learned"]
    estimator: LinearProbe | KNNHead
    if metadata["head"] == "linear":
        params = dict(metadata["estimator_params"])
        if metadata.get("format_version") == 1:  # scikit-learn's solver, unweighted classes
            params.setdefault("class_weight", None)
            params.setdefault("tol", 1e-4)
        estimator = LinearProbe(**params)
        estimator.coef_, estimator.intercept_ = arrays["coef"], arrays["intercept"]
        estimator.C_ = float(learned["C_"])
        estimator.selection_scores_ = {float(c): float(s) for c, s in learned["selection_scores_"]}
        estimator.selection_ = learned.get("selection_") or {"criterion": params.get("select_by")}
        if learned.get("converged_") is not None:
            estimator.converged_, estimator.n_iter_ = bool(learned["converged_"]), int(learned["n_iter_"])
    elif metadata["head"] == "knn":
        estimator = KNNHead(**metadata["estimator_params"])
        estimator.X_, estimator.y_, estimator.k_ = arrays["knn_X"], arrays["knn_y"], int(learned["k_"])
    else:
        raise ValueError(f"unknown head kind {metadata['head']!r}")
    estimator.classes_ = np.asarray(metadata["classes"])
    estimator.n_features_in_ = int(metadata["n_features_in"])
    return estimator


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, range):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
