"""Attribute images with a frozen backbone and a saved head: a label, a decision and the evidence.

Inference only: nothing here imports the training code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from PIL import Image

from attribution.artifact import HeadArtifact, HeadMismatchError
from attribution.backbone import Backbone
from attribution.features import concat_blocks
from attribution.openset import l2_join, l2_normalize, nearest_neighbours

DECISIONS = ("real", "known_generator", "unknown_generator")


@dataclass
class Attribution:
    """The verdict on one image. `decision` is "unknown_generator" when `score < threshold`, else "real"
    or "known_generator" by `label`; `nearest` holds the most similar reference images, most similar
    first, as {"sha256", "label", "similarity"}. `features [D]` (float32, unit L2 norm) place the image in
    the backbone's feature space for its blocks: each block's CLS features L2-normalised, joined in the
    head's block order, the join L2-normalised again, whatever the head's own join; what the unknown pile is
    clustered on (`attribution.clustering`). Not part of `to_dict`."""

    label: str
    decision: str
    score: float
    threshold: float
    probabilities: dict[str, float]
    nearest: list[dict[str, Any]]
    backbone: str
    pretrained: bool
    features: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (the features left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "features"} | {
            "probabilities": dict(self.probabilities),
            "nearest": [dict(n) for n in self.nearest],
        }


class Attributor:
    """A backbone and a head trained on its features; refuses a head trained on another backbone."""

    def __init__(
        self, backbone: Backbone, head: HeadArtifact, *, real_label: str = "real", nearest_k: int = 5
    ) -> None:
        if head.backbone_identity != backbone.identity:
            raise HeadMismatchError(
                f"the head was trained on backbone {head.backbone_identity!r}, "
                f"but the backbone in use is {backbone.identity!r}"
            )
        self.backbone = backbone
        self.head = head
        self.real_label = real_label
        self.nearest_k = nearest_k

    @property
    def blocks(self) -> list[int]:
        """The blocks whose CLS features the head reads, in the head's order."""
        return list(self.head.blocks)

    def attribute(self, images: Sequence[Image.Image]) -> list[Attribution]:
        """Attribute N images: one forward pass for all the head's blocks, then `attribute_features`."""
        features = self.backbone.extract(list(images), self.blocks)
        return self.attribute_features(concat_blocks(features, self.blocks))

    def attribute_features(self, features: np.ndarray) -> list[Attribution]:
        """Attribute N images from their concatenated block features `[N, D]` (`concat_blocks` over
        `self.blocks`; the head joins them its own way, `HeadArtifact.prepare`)."""
        head = self.head
        raw = np.asarray(features, dtype=np.float64)
        if len(raw) == 0:
            return []
        unit = l2_normalize(l2_join(raw, len(self.blocks)))
        features = head.prepare(raw)
        probabilities = head.estimator.predict_proba(features)
        if len(head.reference_features):
            similarities, indices = nearest_neighbours(
                features, head.reference_features, max(self.nearest_k, 1)
            )
            knn_similarity: np.ndarray | None = similarities[:, 0].astype(np.float64)
        else:
            similarities, indices = np.zeros((len(features), 0)), np.zeros((len(features), 0), dtype=np.int64)
            knn_similarity = None  # a kNN head then measures similarity to its own training features
        scores = head.scores(features, knn_similarity=knn_similarity)
        results = []
        for row, (probs, score) in enumerate(zip(probabilities, scores, strict=True)):
            label = head.classes[int(np.argmax(probs))]
            if score < head.threshold:
                decision = "unknown_generator"
            else:
                decision = "real" if label == self.real_label else "known_generator"
            nearest = [
                {
                    "sha256": head.reference_ids[i],
                    "label": head.reference_labels[i],
                    "similarity": float(similarity),
                }
                for similarity, i in zip(
                    similarities[row, : self.nearest_k], indices[row, : self.nearest_k], strict=True
                )
            ]
            results.append(
                Attribution(
                    label=label,
                    decision=decision,
                    score=float(score),
                    threshold=float(head.threshold),
                    probabilities={c: float(p) for c, p in zip(head.classes, probs, strict=True)},
                    nearest=nearest,
                    backbone=self.backbone.identity,
                    pretrained=self.backbone.pretrained,
                    features=unit[row],
                )
            )
        return results
