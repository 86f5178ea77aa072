"""Image perturbations for robustness tests and robust training: re-encoding, blur, resizing, noise,
colour changes and rotation, each at a numeric level, deterministic for a given seed.

`perturb(image, "jpeg", 75)` returns a new RGB image; `parse_perturbations(["jpeg:90,75", "blur:1"])`
reads the command line's form. A perturbed image has its own identity for the feature cache,
`perturbed_sha256(sha256, perturbation, seed)`, so a second run computes nothing.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

# name -> (what the level means, the identity level: the image unchanged)
PERTURBATIONS: dict[str, tuple[str, float | None]] = {
    "jpeg": ("JPEG quality (1-95)", None),
    "blur": ("Gaussian blur sigma in pixels", 0.0),
    "resize": ("scale factor (0.5 halves each side)", 1.0),
    "noise": ("Gaussian noise std on a 0-1 scale", 0.0),
    "brightness": ("brightness factor (1 unchanged)", 1.0),
    "contrast": ("contrast factor (1 unchanged)", 1.0),
    "saturation": ("saturation factor (1 unchanged)", 1.0),
    "rotation": ("rotation in degrees (counter-clockwise, same size, black corners)", 0.0),
}
# What robust training adds: one perturbed copy of each reference image per entry.
ROBUST_TRAINING = ("jpeg:75", "blur:1", "resize:0.5", "noise:0.02")


@dataclass(frozen=True)
class Perturbation:
    """One perturbation at one level, e.g. `Perturbation("jpeg", 75)`; `str()` gives "jpeg:75"."""

    name: str
    level: float

    def __post_init__(self) -> None:
        if self.name not in PERTURBATIONS:
            raise ValueError(f"unknown perturbation {self.name!r}; known: {', '.join(PERTURBATIONS)}")
        _check_level(self.name, self.level)

    def __str__(self) -> str:
        return f"{self.name}:{level_text(self.level)}"

    def apply(self, image: Image.Image, *, seed: int = 0) -> Image.Image:
        return perturb(image, self.name, self.level, seed=seed)


def level_text(level: float) -> str:
    """75.0 -> "75", 0.5 -> "0.5": the key a level has in reports."""
    return f"{level:g}"


def _check_level(name: str, level: float) -> None:
    bad = (
        (name == "jpeg" and not 1 <= level <= 100)
        or (name in ("blur", "noise") and level < 0)
        or (name in ("resize", "brightness", "contrast") and level <= 0)
        or (name == "saturation" and level < 0)
        or (name == "resize" and level > 8)
    )
    if bad or not np.isfinite(level):
        raise ValueError(f"bad level {level!r} for {name} ({PERTURBATIONS[name][0]})")


def _jpeg(image: Image.Image, quality: float, rng: np.random.Generator) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(round(quality)))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def _blur(image: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius=sigma)) if sigma > 0 else image.copy()


def _resize(image: Image.Image, factor: float, rng: np.random.Generator) -> Image.Image:
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.BICUBIC)


def _noise(image: Image.Image, std: float, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    noisy = pixels + rng.normal(0.0, std, size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.round(noisy * 255.0), 0, 255).astype(np.uint8), mode="RGB")


def _enhance(kind: Callable[[Image.Image], ImageEnhance._Enhance]) -> Callable[..., Image.Image]:
    def apply(image: Image.Image, factor: float, rng: np.random.Generator) -> Image.Image:
        return kind(image).enhance(factor)

    return apply


def _rotation(image: Image.Image, degrees: float, rng: np.random.Generator) -> Image.Image:
    return image.rotate(degrees, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=(0, 0, 0))


_APPLY: dict[str, Callable[[Image.Image, float, np.random.Generator], Image.Image]] = {
    "jpeg": _jpeg,
    "blur": _blur,
    "resize": _resize,
    "noise": _noise,
    "brightness": _enhance(ImageEnhance.Brightness),
    "contrast": _enhance(ImageEnhance.Contrast),
    "saturation": _enhance(ImageEnhance.Color),
    "rotation": _rotation,
}


def perturb(image: Image.Image, name: str, level: float, *, seed: int = 0) -> Image.Image:
    """`image` perturbed by `name` at `level` (see `PERTURBATIONS`); a new RGB image. The same image,
    perturbation and seed always give the same pixels (only noise draws random numbers)."""
    if name not in _APPLY:
        raise ValueError(f"unknown perturbation {name!r}; known: {', '.join(PERTURBATIONS)}")
    _check_level(name, float(level))
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return _APPLY[name](rgb, float(level), np.random.default_rng(seed))


def parse_perturbations(specs: Iterable[str]) -> list[Perturbation]:
    """["jpeg:90,75,50", "blur:1,2"] -> one `Perturbation` per level, in the order given, no repeats;
    ValueError with the expected form otherwise."""
    out: list[Perturbation] = []
    for spec in specs:
        name, colon, levels = spec.strip().partition(":")
        if not colon or not levels.strip():
            raise ValueError(f"bad perturbation {spec!r}: use NAME:LEVEL[,LEVEL...], e.g. jpeg:90,75 or blur:1")
        try:
            values = [float(value) for value in levels.split(",") if value.strip()]
        except ValueError:
            raise ValueError(f"bad perturbation levels in {spec!r}: numbers expected") from None
        for value in values:
            item = Perturbation(name.strip().lower(), value)
            if item not in out:
                out.append(item)
    return out


def perturbation_seed(sha256: str, perturbation: Perturbation, seed: int = 0) -> int:
    """The seed an image's perturbation uses: fixed by the image, the perturbation and the run's seed."""
    digest = hashlib.sha256(f"{sha256}|{perturbation}|{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def perturbed_sha256(sha256: str, perturbation: Perturbation, seed: int = 0) -> str:
    """The feature cache's key for the perturbed copy of the image with this `sha256`."""
    return hashlib.sha256(f"perturbed|{sha256}|{perturbation}|{seed}".encode()).hexdigest()


def by_name(perturbations: Sequence[Perturbation]) -> dict[str, list[Perturbation]]:
    """Group perturbations by name, levels in the order given."""
    groups: dict[str, list[Perturbation]] = {}
    for item in perturbations:
        groups.setdefault(item.name, []).append(item)
    return groups
