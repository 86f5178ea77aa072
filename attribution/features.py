"""Block features for many images, computed in batches and cached on disk.

The cache holds one `.npy` vector per (image SHA-256, backbone identity, block), so a
head trained on block 8 and another on blocks 6+8 share work, and a second pass over
the same reference images computes nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import tempfile
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from attribution.images import ImageSource, open_image, sha256_of

if TYPE_CHECKING:  # the cache alone needs no torch
    import torch

    from attribution.backbone import Backbone

FeatureSource = ImageSource | Image.Image | Callable[[], Image.Image]
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
    loader_threads: int = 0,
    failures: dict[int, Exception] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, np.ndarray]:
    """Features of N images: {block: float32 [N, backbone.width]}, rows in input order.

    sources: paths, file bytes, binary file objects (opened with `open_image`), PIL images, or
    callables that return a PIL image (for files behind a storage API). With a cache, items whose
    SHA-256 is known (given in `sha256s`, or hashed from the file; PIL images and callables have
    none) are looked up first, and only the missing ones are opened and computed; items with the
    same SHA-256 are computed once. `progress(done, total)` is called after the lookup and after
    each batch.

    With `loader_threads` > 0, images are opened and preprocessed by that many threads up to two
    batches ahead, so that decoding the next batch overlaps the forward pass of this one (Pillow
    and the resize release the GIL). An image that cannot be opened or preprocessed raises, unless
    `failures` is given: its error is then recorded there under its index and its rows stay zero.
    """
    import torch

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
        if sha is None and cache is not None and not isinstance(source, Image.Image) and not callable(source):
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
    batches = [groups[start : start + batch_size] for start in range(0, len(groups), batch_size)]
    firsts = [[sources[indices[0]] for _, indices in batch] for batch in batches]
    for batch, prepared in zip(batches, _prepared_ahead(backbone, firsts, loader_threads), strict=True):
        rows = []
        for (_, indices), item in zip(batch, prepared, strict=True):
            if isinstance(item, Exception):
                if failures is None:
                    raise item
                failures.update(dict.fromkeys(indices, item))
            else:
                rows.append(item)
        features = backbone.extract(torch.stack(rows), take) if rows else {}
        computed = iter(range(len(rows)))
        for (key, indices), item in zip(batch, prepared, strict=True):
            if not isinstance(item, Exception):
                row = next(computed)
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


def join_blocks(features: dict[int, np.ndarray], blocks: Iterable[int], join: str = "concat") -> np.ndarray:
    """The head's input from per-block features: `concat` is `concat_blocks` (raw, what every head before
    the `feature_join` setting reads); `l2` scales each block's features to unit L2 norm before joining
    (`attribution.openset.l2_join`), so that a block with larger activations does not dominate."""
    from attribution.openset import FEATURE_JOINS, l2_join

    chosen = list(blocks)
    joined = concat_blocks(features, chosen)
    if join == "concat":
        return joined
    if join == "l2":
        return l2_join(joined, len(chosen))
    raise ValueError(f"unknown feature join {join!r}; expected one of {FEATURE_JOINS}")


def _prepare(backbone: Backbone, source: FeatureSource) -> torch.Tensor | Exception:
    """The preprocessed tensor of one source, or the error that stopped it."""
    try:
        if isinstance(source, Image.Image):
            image = source
        elif callable(source):
            image = source()
        else:
            image = open_image(source)
        return backbone.preprocess(image)
    except Exception as error:  # a damaged or hostile file fails alone; the caller decides what that means
        return error


def _prepared_ahead(
    backbone: Backbone, batches: list[list[FeatureSource]], threads: int
) -> Iterator[list[torch.Tensor | Exception]]:
    """Each batch's preprocessed tensors, in order. With threads, the next batch is already being
    prepared while the caller runs the forward pass of the one just yielded."""
    if threads < 1:
        for batch in batches:
            yield [_prepare(backbone, source) for source in batch]
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="preprocess") as pool:
        submitted: deque[list[Future[torch.Tensor | Exception]]] = deque()
        upcoming = iter(batches)
        for batch in itertools.islice(upcoming, 2):
            submitted.append([pool.submit(_prepare, backbone, source) for source in batch])
        while submitted:
            futures = submitted.popleft()
            for batch in itertools.islice(upcoming, 1):
                submitted.append([pool.submit(_prepare, backbone, source) for source in batch])
            yield [future.result() for future in futures]
