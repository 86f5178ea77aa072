"""A small synthetic origin-attribution benchmark that builds offline in seconds.

One class of real photographs (random crops of the photographs that ship inside
scikit-image) and eight "generator networks": randomly initialised CNN decoders
with four upsampling architectures and two weight seeds each. As in POSE's OSMA
benchmark, the unknown generators differ from the known ones only by seed or by
architecture. Every generated image is a smooth content image (a blurred crop of
a photograph) plus the generator's output, rescaled to a fixed strength: that
residual is the generator's fingerprint (its upsampling artefacts), so the classes
differ by trace, not by colour or subject.
"""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter
from torch import nn

ARCHITECTURES = ("tconv", "nearest", "bilinear", "pixelshuffle")
REAL = "real"
LATENT_DIM = 64
TRACE_STRENGTH = 0.04  # standard deviation of the generator residual, image in [0, 1]
CONTENT_BLUR = 1.5  # Gaussian radius (pixels) that makes generated content smooth


@dataclass(frozen=True)
class GeneratorSpec:
    """One synthetic generator: its class name, upsampling architecture and weight seed."""

    name: str
    architecture: str
    seed: int


GENERATORS: tuple[GeneratorSpec, ...] = tuple(
    GeneratorSpec(f"{arch}-s{seed}", arch, seed) for seed in (1, 2) for arch in ARCHITECTURES
)
DEFAULT_KNOWN = [REAL] + [g.name for g in GENERATORS if g.seed == 1]
DEFAULT_UNKNOWN = [g.name for g in GENERATORS if g.seed == 2]
CLASSES = [REAL] + [g.name for g in GENERATORS]

# Colour photographs bundled with scikit-image (no download needed); others are skipped.
_PHOTOGRAPHS = (
    "astronaut",
    "cat",
    "chelsea",
    "coffee",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle_left",
    "motorcycle_right",
    "retina",
    "rocket",
)


def _skimage_loader(name: str) -> Callable[[], np.ndarray]:
    from skimage import data

    if name.startswith("motorcycle_"):
        index = 0 if name.endswith("left") else 1
        return lambda: data.stereo_motorcycle()[index]
    loader: Callable[[], np.ndarray] = getattr(data, name)
    return loader


def real_photographs() -> dict[str, Image.Image]:
    """The RGB photographs available offline in the installed scikit-image, by name."""
    return dict(_load_photographs())


@functools.cache
def _load_photographs() -> dict[str, Image.Image]:
    photos: dict[str, Image.Image] = {}
    for name in _PHOTOGRAPHS:
        try:
            array = np.asarray(_skimage_loader(name)())
        except (AttributeError, ImportError, OSError, ValueError):
            continue  # needs a pooch download, or missing from this scikit-image version
        if array.ndim == 3 and array.shape[2] >= 3:
            photos[name] = Image.fromarray(array[:, :, :3].astype(np.uint8), "RGB")
    if not photos:
        raise RuntimeError("no scikit-image photograph can be loaded offline")
    return photos


def _random_crop(photo: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """Square crop at a random scale and position, random flip, mild colour jitter."""
    side = min(photo.size)
    crop = int(side * rng.uniform(0.25, 1.0))
    left = int(rng.integers(0, photo.width - crop + 1))
    top = int(rng.integers(0, photo.height - crop + 1))
    image = photo.crop((left, top, left + crop, top + crop)).resize((size, size), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhancer(image).enhance(float(rng.uniform(0.9, 1.1)))
    return image


def _upsample(architecture: str, c_in: int, c_out: int) -> nn.Module:
    if architecture == "tconv":
        return nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1)
    if architecture in ("nearest", "bilinear"):
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode=architecture),
            nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
        )
    if architecture == "pixelshuffle":
        return nn.Sequential(nn.Conv2d(c_in, 4 * c_out, kernel_size=3, padding=1), nn.PixelShuffle(2))
    raise ValueError(f"unknown architecture {architecture!r}; choose from {', '.join(ARCHITECTURES)}")


class Decoder(nn.Module):
    """DCGAN-style decoder: latent [N, LATENT_DIM] -> image [N, 3, 16*start, 16*start] in (-1, 1)."""

    def __init__(self, architecture: str, start: int, widths: tuple[int, ...] = (64, 48, 32, 24, 16)) -> None:
        super().__init__()
        self.start, self.width = start, widths[0]
        self.project = nn.Linear(LATENT_DIM, widths[0] * start * start)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [_upsample(architecture, c_in, c_out), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(widths[-1], 3, kernel_size=3, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(-1, self.width, self.start, self.start)
        return self.body(torch.nn.functional.leaky_relu(x, 0.2))


def build_generator(spec: GeneratorSpec, size: int) -> Decoder:
    """The decoder for `spec`, its weights a pure function of (architecture, seed)."""
    generator = torch.Generator().manual_seed(zlib.crc32(f"{spec.architecture}-{spec.seed}".encode()))
    decoder = Decoder(spec.architecture, start=-(-size // 16))
    for module in decoder.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.kaiming_uniform_(module.weight, a=0.2, nonlinearity="leaky_relu", generator=generator)
            if module.bias is not None:
                nn.init.uniform_(module.bias, -0.1, 0.1, generator=generator)
    return decoder.eval()


def generator_traces(spec: GeneratorSpec, latents: np.ndarray, size: int) -> np.ndarray:
    """Zero-mean, unit-variance generator outputs: latents [N, LATENT_DIM] -> [N, size, size, 3]."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same bytes whatever the core count (and faster for such small convolutions)
    try:
        with torch.no_grad():
            out = build_generator(spec, size)(torch.from_numpy(latents).float()).double()
    finally:
        torch.set_num_threads(threads)
    offset = (out.shape[-1] - size) // 2
    out = out[:, :, offset : offset + size, offset : offset + size]
    out = out - out.mean(dim=(2, 3), keepdim=True)  # no colour cast: the trace is texture only
    out = out / (out.std(dim=(1, 2, 3), keepdim=True) + 1e-8)
    return out.permute(0, 2, 3, 1).numpy()


def _save(image: Image.Image | np.ndarray, path: Path) -> None:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8), "RGB")
    image.save(path, format="PNG")


def make_benchmark(out_dir: str | Path, *, seed: int = 0, per_class: int = 40, size: int = 96) -> dict[str, Any]:
    """Write an ImageFolder `out_dir/<class>/NNNN.png` (9 classes, `per_class` images each, `size` px).

    The same seed gives byte-identical files. Returns the manifest, also written to
    `out_dir/manifest.json`: classes, per-class counts, each generator's architecture and seed.
    """
    if per_class < 1 or size < 16:
        raise ValueError("per_class must be at least 1 and size at least 16 pixels")
    root = Path(out_dir)
    photos = real_photographs()
    names = sorted(photos)

    def crops(rng: np.random.Generator) -> list[Image.Image]:
        return [_random_crop(photos[names[int(rng.integers(len(names)))]], rng, size) for _ in range(per_class)]

    def write(name: str, images: list[Image.Image] | np.ndarray) -> None:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(images):
            _save(image, folder / f"{index:04d}.png")

    write(REAL, crops(np.random.default_rng([seed, 0])))
    for class_index, spec in enumerate(GENERATORS, start=1):
        rng = np.random.default_rng([seed, class_index])
        content = np.stack(
            [np.asarray(c.filter(ImageFilter.GaussianBlur(CONTENT_BLUR)), np.float64) / 255.0 for c in crops(rng)]
        )
        latents = rng.standard_normal((per_class, LATENT_DIM))
        write(spec.name, content + TRACE_STRENGTH * generator_traces(spec, latents, size))

    manifest: dict[str, Any] = {
        "seed": seed,
        "size": size,
        "classes": list(CLASSES),
        "counts": {name: per_class for name in CLASSES},
        "generators": [asdict(spec) for spec in GENERATORS],
        "known": list(DEFAULT_KNOWN),
        "unknown": list(DEFAULT_UNKNOWN),
        "real_sources": [f"skimage.data.{name}" for name in names],
        "trace_strength": TRACE_STRENGTH,
        "content_blur": CONTENT_BLUR,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
