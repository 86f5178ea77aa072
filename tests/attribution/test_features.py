"""Batched feature extraction over files, and the on-disk feature cache."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attribution.backbone import Backbone, load_backbone
from attribution.config import OFFLINE_BACKBONE
from attribution.features import FeatureCache, concat_blocks, extract_features
from attribution.images import ImageRejected, open_image, sha256_of


class CountingBackbone(Backbone):
    """The real backbone, recording how many images each forward pass is given."""

    def __init__(self, inner: Backbone) -> None:
        self.__dict__.update(inner.__dict__)
        self.batches: list[int] = []

    def extract(
        self, images: Sequence[Image.Image] | torch.Tensor, blocks: Iterable[int]
    ) -> dict[int, np.ndarray]:
        self.batches.append(len(images))
        return super().extract(images, blocks)


@pytest.fixture(scope="module")
def shared_backbone() -> Backbone:
    return load_backbone(OFFLINE_BACKBONE)


@pytest.fixture
def backbone(shared_backbone: Backbone) -> CountingBackbone:
    return CountingBackbone(shared_backbone)


def png(seed: int, size: tuple[int, int] = (40, 32)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    """Three distinct images and a copy of the first under another name: a, b, copy of a, c."""
    paths = [tmp_path / name for name in ("a.png", "b.png", "a-copy.png", "c.png")]
    for path, seed in zip(paths, (1, 2, 1, 3), strict=True):
        path.write_bytes(png(seed))
    return paths


def test_it_computes_only_what_the_cache_lacks(
    tmp_path: Path, backbone: CountingBackbone, files: list[Path]
) -> None:
    cache = FeatureCache(tmp_path / "cache")
    progress: list[tuple[int, int]] = []

    first = extract_features(
        backbone, files, [3, 1], cache=cache, batch_size=2, progress=lambda *p: progress.append(p)
    )

    assert backbone.batches == [2, 1]  # three distinct files, in batches of two
    assert progress == [(0, 4), (3, 4), (4, 4)]
    direct = backbone.extract([open_image(path) for path in files], [1, 3])
    for block in (1, 3):
        assert first[block].shape == (4, 384) and first[block].dtype == np.float32
        np.testing.assert_allclose(first[block], direct[block], atol=1e-4)
    np.testing.assert_array_equal(first[3][0], first[3][2])  # the copy is the same file
    stored = sorted(path.name for path in (tmp_path / "cache").rglob("*") if path.is_file())
    assert stored == sorted(f"{sha256_of(path)}.npy" for path in files[:2] + files[3:] for _ in (1, 3))

    backbone.batches.clear()
    progress.clear()
    second = extract_features(backbone, files, [1, 3], cache=cache, progress=lambda *p: progress.append(p))

    assert backbone.batches == []
    assert progress == [(4, 4)]
    for block in (1, 3):
        np.testing.assert_array_equal(second[block], first[block])

    # A new block needs a pass for every file; the cached block 3 comes back unchanged.
    third = extract_features(backbone, files, [2, 3], cache=cache)
    assert backbone.batches == [3]
    np.testing.assert_array_equal(third[3], first[3])


def test_with_known_hashes_cached_files_are_never_opened(
    tmp_path: Path, backbone: CountingBackbone, files: list[Path]
) -> None:
    cache = FeatureCache(tmp_path / "cache")
    hashes = [sha256_of(path) for path in files]
    first = extract_features(backbone, files, [2], cache=cache, sha256s=hashes)
    for path in files:
        path.unlink()
    backbone.batches.clear()

    again = extract_features(backbone, files, [2], cache=cache, sha256s=hashes)

    assert backbone.batches == []
    np.testing.assert_array_equal(again[2], first[2])


def test_it_takes_pil_images_and_bytes_without_a_cache(backbone: CountingBackbone) -> None:
    data = [png(4), png(5, size=(30, 50))]
    images = [open_image(item) for item in data]

    from_bytes = extract_features(backbone, data, [3])
    from_images = extract_features(backbone, images, [3])

    np.testing.assert_allclose(from_bytes[3], from_images[3], atol=1e-5)
    assert extract_features(backbone, [], [3])[3].shape == (0, 384)
    with pytest.raises(ValueError, match="sha256s"):
        extract_features(backbone, data, [3], sha256s=["0" * 64])


def test_loader_threads_prepare_ahead_and_give_the_same_features(backbone: CountingBackbone) -> None:
    data = [png(seed, size=(48 + seed, 40)) for seed in range(7)]
    opened_by: list[str] = []

    def loader(item: bytes):  # type: ignore[no-untyped-def]
        def load() -> Image.Image:
            opened_by.append(threading.current_thread().name)
            return open_image(item)

        return load

    inline = extract_features(backbone, data, [2, 5], batch_size=3)
    threaded = extract_features(backbone, [loader(item) for item in data], [2, 5], batch_size=3, loader_threads=2)

    assert backbone.batches == [3, 3, 1] * 2
    assert len(opened_by) == 7 and all(name.startswith("preprocess") for name in opened_by)
    for block in (2, 5):
        np.testing.assert_array_equal(threaded[block], inline[block])


@pytest.mark.parametrize("threads", [0, 2])
def test_an_image_that_cannot_be_read_fails_alone_when_failures_are_collected(
    backbone: CountingBackbone, threads: int
) -> None:
    data = [png(1), b"not an image", png(2), png(3)]
    failures: dict[int, Exception] = {}

    features = extract_features(backbone, data, [4], batch_size=2, loader_threads=threads, failures=failures)

    assert list(failures) == [1] and "not a recognised image" in str(failures[1])
    assert backbone.batches == [1, 2]  # the pass skipped the unreadable one
    alone = extract_features(backbone, [data[0], data[2], data[3]], [4])
    np.testing.assert_allclose(features[4][[0, 2, 3]], alone[4], atol=1e-5)
    assert not features[4][1].any()
    with pytest.raises(ImageRejected, match="not a recognised image"):
        extract_features(backbone, data, [4], loader_threads=threads)


def test_concat_blocks_keeps_the_order_asked_for() -> None:
    features = {2: np.ones((3, 4), np.float32), 8: np.zeros((3, 4), np.float32)}

    combined = concat_blocks(features, [8, 2])

    assert combined.shape == (3, 8)
    assert combined[:, :4].sum() == 0 and combined[:, 4:].sum() == 12
    with pytest.raises(KeyError, match="5"):
        concat_blocks(features, [5])


def test_the_cache_layout_and_its_refusals(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    sha = "ab" + "0" * 62
    vector = np.arange(6, dtype=np.float64)

    assert cache.get(sha, "ViT-S-16/random-seed0", 8) is None
    cache.put(sha, "ViT-S-16/random-seed0", 8, vector)

    path = cache.path(sha, "ViT-S-16/random-seed0", 8)
    assert path.relative_to(tmp_path).parts[1:] == ("8", "ab", f"{sha}.npy")
    assert path.relative_to(tmp_path).parts[0].startswith("ViT-S-16_random-seed0-")
    stored = cache.get(sha, "ViT-S-16/random-seed0", 8)
    assert stored is not None and stored.dtype == np.float32
    np.testing.assert_array_equal(stored, vector)
    assert cache.get(sha, "ViT-S-16/random-seed1", 8) is None
    assert cache.get(sha, "ViT-S-16/random-seed0", 7) is None
    assert cache.path(sha, "a/b", 8).parent != cache.path(sha, "a_b", 8).parent
    for bad in ("../../etc/passwd", "AB" + "0" * 62, "abc"):
        with pytest.raises(ValueError, match="sha256"):
            cache.put(bad, "ViT-S-16/random-seed0", 8, vector)
    path.write_bytes(b"damaged")
    assert cache.get(sha, "ViT-S-16/random-seed0", 8) is None


def test_concurrent_writers_never_expose_a_partial_file(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    sha = "cd" * 32
    vectors = [np.full(20_000, value, dtype=np.float32) for value in range(4)]
    seen: list[np.ndarray | None] = []

    def write(vector: np.ndarray) -> None:
        for _ in range(15):
            cache.put(sha, "id", 8, vector)

    cache.put(sha, "id", 8, vectors[0])  # from here on every read must find a whole vector
    writers = [threading.Thread(target=write, args=(vector,)) for vector in vectors]
    for thread in writers:
        thread.start()
    while any(thread.is_alive() for thread in writers):
        seen.append(cache.get(sha, "id", 8))
    for thread in writers:
        thread.join()

    # A partial file would read as None (a damaged entry) or as a vector of mixed values.
    assert seen and all(v is not None and v.shape == (20_000,) and len(set(v.tolist())) == 1 for v in seen)
    assert [path.name for path in cache.path(sha, "id", 8).parent.iterdir()] == [f"{sha}.npy"]
