"""Perturbations: each changes the image as its name says, deterministically, and the level parser."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from attribution.perturb import (
    PERTURBATIONS,
    Perturbation,
    parse_perturbations,
    perturb,
    perturbation_seed,
    perturbed_sha256,
)


@pytest.fixture
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 64, dtype=np.float32)[None, :, None] * np.ones((48, 64, 3), np.float32)
    pixels = np.clip(base + rng.normal(0, 20, size=base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_each_perturbation_is_deterministic_and_changes_the_image(image: Image.Image, name: str) -> None:
    level = {"jpeg": 50, "blur": 1.5, "resize": 0.5, "noise": 0.05, "rotation": 15}.get(name, 1.6)
    first, second = perturb(image, name, level, seed=3), perturb(image, name, level, seed=3)
    assert first.mode == "RGB"
    assert np.array_equal(pixels(first), pixels(second))
    if first.size == image.size:
        assert np.abs(pixels(first) - pixels(image)).mean() > 1.0
    assert np.array_equal(pixels(image), pixels(image.copy()))  # the input is left as it was


def test_identity_levels_leave_the_image_unchanged(image: Image.Image) -> None:
    for name, (_, identity) in PERTURBATIONS.items():
        if identity is not None:
            assert np.abs(pixels(perturb(image, name, identity)) - pixels(image)).max() <= 1, name


def test_levels_order_the_damage(image: Image.Image) -> None:
    def error(name: str, level: float) -> float:
        return float(np.abs(pixels(perturb(image, name, level)) - pixels(image)).mean())

    assert error("jpeg", 95) < error("jpeg", 50) < error("jpeg", 10)
    assert error("blur", 0.5) < error("blur", 2) < error("blur", 4)
    assert error("noise", 0.01) < error("noise", 0.1)
    assert perturb(image, "resize", 0.5).size == (32, 24)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    assert np.array_equal(pixels(perturb(image, "jpeg", 75)), pixels(Image.open(buffer).convert("RGB")))


def test_noise_follows_the_seed(image: Image.Image) -> None:
    a, b = perturb(image, "noise", 0.05, seed=1), perturb(image, "noise", 0.05, seed=2)
    assert not np.array_equal(pixels(a), pixels(b))
    std = (pixels(perturb(Image.new("RGB", (64, 64), (128, 128, 128)), "noise", 0.05, seed=1)) / 255).std()
    assert std == pytest.approx(0.05, rel=0.1)


def test_it_parses_the_command_line_form() -> None:
    parsed = parse_perturbations(["jpeg:90,75,50", "blur:1,2", "resize:0.5", "jpeg:90"])
    assert [str(p) for p in parsed] == ["jpeg:90", "jpeg:75", "jpeg:50", "blur:1", "blur:2", "resize:0.5"]
    for bad in ("jpeg", "jpeg:", "fog:1", "jpeg:abc", "jpeg:0", "resize:-1", "blur:-2"):
        with pytest.raises(ValueError):
            parse_perturbations([bad])


def test_a_perturbed_copy_has_its_own_cache_key_and_seed() -> None:
    sha = "ab" * 32
    jpeg, blur = Perturbation("jpeg", 75), Perturbation("blur", 1)
    keys = {perturbed_sha256(sha, jpeg), perturbed_sha256(sha, blur), perturbed_sha256(sha, jpeg, seed=1), sha}
    assert len(keys) == 4 and all(len(k) == 64 for k in keys)
    assert perturbation_seed(sha, jpeg) == perturbation_seed(sha, jpeg) != perturbation_seed(sha, blur)
