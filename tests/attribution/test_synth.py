"""The synthetic benchmark: layout, determinism, offline real photographs, generator traces."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from attribution import synth
from attribution.synth import (
    CLASSES,
    DEFAULT_KNOWN,
    DEFAULT_UNKNOWN,
    GENERATORS,
    LATENT_DIM,
    build_generator,
    generator_traces,
    make_benchmark,
    real_photographs,
)


def digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("synth")
    return root, make_benchmark(root, seed=3, per_class=4, size=64)


def test_it_writes_an_image_folder_with_a_manifest(benchmark: tuple[Path, dict[str, Any]]) -> None:
    root, manifest = benchmark

    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(CLASSES)
    for name in CLASSES:
        files = sorted((root / name).iterdir())
        assert [f.name for f in files] == ["0000.png", "0001.png", "0002.png", "0003.png"]
        with Image.open(files[0]) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", (64, 64))
    assert manifest == json.loads((root / "manifest.json").read_text())
    assert manifest["counts"] == {name: 4 for name in CLASSES}
    assert manifest["known"] == DEFAULT_KNOWN and manifest["unknown"] == DEFAULT_UNKNOWN
    assert {(g["name"], g["architecture"], g["seed"]) for g in manifest["generators"]} == {
        (f"{arch}-s{seed}", arch, seed) for arch in synth.ARCHITECTURES for seed in (1, 2)
    }
    assert manifest["real_sources"] and all(s.startswith("skimage.data.") for s in manifest["real_sources"])


def test_it_is_byte_identical_for_a_seed_and_differs_across_seeds(
    benchmark: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    make_benchmark(tmp_path / "same", seed=3, per_class=4, size=64)
    make_benchmark(tmp_path / "other", seed=4, per_class=4, size=64)
    first, same, other = digests(benchmark[0]), digests(tmp_path / "same"), digests(tmp_path / "other")

    assert first == same
    images = [key for key in first if key.endswith(".png")]
    assert len(images) == 4 * len(CLASSES)
    assert all(first[key] != other[key] for key in images)


def test_known_and_unknown_generators_differ_by_seed_or_architecture() -> None:
    assert DEFAULT_KNOWN[0] == "real" and len(GENERATORS) == 8
    known = {g.architecture: g for g in GENERATORS if g.name in DEFAULT_KNOWN}
    for generator in (g for g in GENERATORS if g.name in DEFAULT_UNKNOWN):
        assert generator.seed != known[generator.architecture].seed


def test_real_photographs_come_from_scikit_image_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the benchmark must build offline")

    monkeypatch.setattr(socket, "socket", no_network)
    synth._load_photographs.cache_clear()
    photos = real_photographs()

    assert {"astronaut", "chelsea", "coffee", "rocket"} <= photos.keys()
    assert all(photo.mode == "RGB" and min(photo.size) >= 100 for photo in photos.values())


def test_every_image_is_a_different_non_flat_picture(benchmark: tuple[Path, dict[str, Any]]) -> None:
    root = benchmark[0]
    pictures = [np.asarray(Image.open(p), np.float64) for p in sorted(root.glob("*/*.png"))]

    assert len({picture.tobytes() for picture in pictures}) == len(pictures) == 4 * len(CLASSES)
    assert all(picture.std() > 5 for picture in pictures)


def test_each_generator_is_a_pure_function_of_architecture_and_seed() -> None:
    latents = np.random.default_rng(0).standard_normal((2, LATENT_DIM))
    tconv_s1, tconv_s2, nearest_s1 = GENERATORS[0], GENERATORS[4], GENERATORS[1]
    assert (tconv_s1.name, tconv_s2.name, nearest_s1.name) == ("tconv-s1", "tconv-s2", "nearest-s1")

    first = build_generator(tconv_s1, 64).state_dict()
    again = build_generator(tconv_s1, 64).state_dict()
    assert all(torch.equal(first[key], again[key]) for key in first)
    trace = generator_traces(tconv_s1, latents, 64)
    assert trace.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(trace, generator_traces(tconv_s1, latents, 64))
    np.testing.assert_allclose(trace.mean(axis=(1, 2)), 0.0, atol=1e-9)  # no colour cast
    np.testing.assert_allclose(trace.std(axis=(1, 2, 3)), 1.0, atol=1e-3)
    assert np.abs(trace - generator_traces(tconv_s2, latents, 64)).mean() > 0.1
    assert np.abs(trace - generator_traces(nearest_s1, latents, 64)).mean() > 0.1


def test_upsampling_leaves_its_periodic_trace() -> None:
    """Transposed convolutions leave a checkerboard (energy at the Nyquist frequency); bilinear
    upsampling followed by a convolution leaves almost none."""
    latents = np.random.default_rng(1).standard_normal((8, LATENT_DIM))

    def nyquist_share(architecture: str) -> float:
        spec = next(g for g in GENERATORS if g.architecture == architecture and g.seed == 1)
        power = np.abs(np.fft.fft2(generator_traces(spec, latents, 64), axes=(1, 2))) ** 2
        return float(power[:, 32, :, :].sum() / power.sum())

    assert nyquist_share("tconv") > 5 * nyquist_share("bilinear")


def test_it_rejects_a_bad_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="per_class"):
        make_benchmark(tmp_path, per_class=0)
