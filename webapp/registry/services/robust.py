"""Robust training (TRAINING_ROBUST=1): perturbed copies of the reference images join the training set.

Each reference gets one copy per entry of `attribution.perturb.ROBUST_TRAINING` (JPEG 75, blur 1, half
size, noise 0.02), made by the same code as the robustness evaluation, seeded by the image, and its
features are cached under the copy's own key, so a second training computes nothing new.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from django.core.files.storage import default_storage

from webapp.registry.models import ReferenceImage

if TYPE_CHECKING:
    from PIL import Image

    from attribution.backbone import Backbone
    from attribution.features import FeatureCache


def _loader(name: str, perturbation: Any, seed: int) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        from attribution.images import open_image

        with default_storage.open(name, "rb") as handle:
            image: Image.Image = perturbation.apply(open_image(handle), seed=seed)
            return image

    return load


def reference_features_robust(
    references: Sequence[ReferenceImage],
    by_block: dict[int, np.ndarray],
    labels: list[str],
    *,
    backbone: Backbone,
    cache: FeatureCache,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[int, np.ndarray], list[str], list[str], dict[str, Any]]:
    """The training set with the perturbed copies appended: features `{block: [N * (1 + P), D]}`, labels,
    sample ids (the references' sha256, repeated for their copies, so that a copy found as the nearest
    reference shows its original) and what was done, for the
    head's metrics."""
    from attribution.features import extract_features
    from attribution.perturb import ROBUST_TRAINING, parse_perturbations, perturbation_seed, perturbed_sha256

    perturbations = parse_perturbations(ROBUST_TRAINING)
    blocks = sorted(by_block)
    parts = {block: [by_block[block]] for block in blocks}
    out_labels, ids = list(labels), [reference.sha256 for reference in references]
    for index, perturbation in enumerate(perturbations):
        sources = [
            _loader(str(r.image.name), perturbation, perturbation_seed(r.sha256, perturbation)) for r in references
        ]
        keys = [perturbed_sha256(r.sha256, perturbation) for r in references]
        features = extract_features(backbone, sources, blocks, cache=cache, sha256s=keys, batch_size=batch_size)
        for block in blocks:
            parts[block].append(features[block])
        out_labels += labels
        ids += [r.sha256 for r in references]  # a copy's evidence is its original reference image
        if progress is not None:
            progress(index + 1, len(perturbations))
    record = {"perturbations": [str(p) for p in perturbations], "copies": len(references) * len(perturbations)}
    return {block: np.concatenate(parts[block]) for block in blocks}, out_labels, ids, record
