"""Block features for many images, computed in batches and cached on disk.

The cache holds one `.npy` vector per (image SHA-256, backbone identity, block), so a
head trained on block 8 and another on blocks 6+8 share work, and a second pass over
the same reference images computes nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from attribution.images import ImageSource, open_image, sha256_of

if TYPE_CHECKING:  # the cache alone needs no torch
    from attribution.backbone import Backbone

FeatureSource = ImageSource | Image.Image
_SHA256 = re.compile(r"[0-9a-f]{64}")


class FeatureCache:
    """One float32 vector per (sha256, backbone identity, block) under `root`.

    Layout: root/<identity as a folder name>/<block>/<sha[:2]>/<sha>.npy. Writes go to a
    temporary file in the same folder and are renamed into place, so concurrent workers
    never see a partial file.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, sha256: str, backbone_identity: str, block: int) -> Path:
        """Where the vector lives; ValueError for anything but a lowercase hex SHA-256."""
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a lowercase hex sha256: {sha256!r}")
        # Readable and collision-free: the sanitised identity plus a hash of the exact one.
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", backbone_identity)
        folder = f"{readable}-{hashlib.sha256(backbone_identity.encode()).hexdigest()[:8]}"
        return self.root / folder / str(int(block)) / sha256[:2] / f"{sha256}.npy"

    def get(self, sha256: str, backbone_identity: str, block: int) -> np.ndarray | None:
        """The cached vector [D] float32, or None when absent or unreadable."""
        try:
            return np.load(self.path(sha256, backbone_identity, block), allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):
            return None  # damaged entry: treated as a miss, recomputed and overwritten

    def put(self, sha256: str, backbone_identity: str, block: int, vector: np.ndarray) -> None:
        """Store a vector [D] (written as float32), atomically."""
        target = self.path(sha256, backbone_identity, block)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as handle:
            try:
                np.save(handle, np.asarray(vector, dtype=np.float32))
            except BaseException:
                os.unlink(handle.name)
                raise
        os.chmod(handle.name, 0o644)  # mkstemp makes it 0600; web and worker processes share the cache
        os.replace(handle.name, target)


def extract_features(
    backbone: Backbone,
    sources: Sequence[FeatureSource],
    blocks: Iterable[int],
    *,
    sha256s: Sequence[str | None] | None = None,
    cache: FeatureCache | None = None,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, np.ndarray]:
    """Features of N images: {block: float32 [N, backbone.width]}, rows in input order.

    sources: paths, file bytes, binary file objects (opened with `open_image`) or PIL images.
    With a cache, items whose SHA-256 is known (given in `sha256s`, or hashed from the file;
    PIL images have no file) are looked up first, and only the missing ones are opened and
    computed; items with the same SHA-256 are computed once. `progress(done, total)` is
    called after the lookup and after each batch.
    """
    take = backbone.validate_blocks(blocks)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if sha256s is not None and len(sha256s) != len(sources):
        raise ValueError(f"{len(sha256s)} sha256s for {len(sources)} sources")
    total = len(sources)
    out = {block: np.zeros((total, backbone.width), dtype=np.float32) for block in take}

    # Items to compute, grouped by key so that a file listed twice is computed once.
    pending: dict[Hashable, list[int]] = {}
    for index, source in enumerate(sources):
        sha = sha256s[index] if sha256s is not None else None
        if sha is None and cache is not None and not isinstance(source, Image.Image):
            sha = sha256_of(source)
        if cache is not None and sha is not None:
            cached = [cache.get(sha, backbone.identity, block) for block in take]
            if all(vector is not None for vector in cached):
                for block, vector in zip(take, cached, strict=True):
                    out[block][index] = vector
                continue
        pending.setdefault(sha if sha is not None else ("index", index), []).append(index)
    done = total - sum(len(indices) for indices in pending.values())
    if progress is not None:
        progress(done, total)

    groups = list(pending.items())
    for start in range(0, len(groups), batch_size):
        batch = groups[start : start + batch_size]
        images = [_as_image(sources[indices[0]]) for _, indices in batch]
        features = backbone.extract(images, take)
        for row, (key, indices) in enumerate(batch):
            for block in take:
                out[block][indices] = features[block][row]
                if cache is not None and isinstance(key, str):
                    cache.put(key, backbone.identity, block, features[block][row])
            done += len(indices)
        if progress is not None:
            progress(done, total)
    return out


def concat_blocks(features: dict[int, np.ndarray], blocks: Iterable[int]) -> np.ndarray:
    """Concatenate per-block features in the order of `blocks`: [N, D * len(blocks)]."""
    chosen = list(blocks)
    missing = [block for block in chosen if block not in features]
    if not chosen or missing:
        raise KeyError(f"blocks {missing or chosen} are not in the features (have {sorted(features)})")
    return np.concatenate([features[block] for block in chosen], axis=1)


def _as_image(source: FeatureSource) -> Image.Image:
    return source if isinstance(source, Image.Image) else open_image(source)
