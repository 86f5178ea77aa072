"""The batch size a backbone runs fastest at, on the device it is on, measured rather than guessed.

A CPU is often fastest at small batches (the caches hold them), a GPU at large ones; the best size also
depends on the model, the precision and the blocks asked for. `fastest_batch_size` times a few sizes with
blank images and keeps the one with the most images per second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from PIL import Image

from attribution.backbone import Backbone

CPU_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)
GPU_CANDIDATES = (8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class BatchTiming:
    """How fast one batch size ran: `images_per_s` over `passes` timed passes (after one untimed pass)."""

    batch_size: int
    images_per_s: float
    passes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BatchChoice:
    batch_size: int
    timings: list[BatchTiming]

    def as_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "timings": [timing.as_dict() for timing in self.timings]}


def default_candidates(backbone: Backbone) -> tuple[int, ...]:
    return GPU_CANDIDATES if str(backbone.device).startswith("cuda") else CPU_CANDIDATES


def time_batch_size(backbone: Backbone, batch_size: int, blocks: Sequence[int], *, min_seconds: float) -> BatchTiming:
    """Images per second of forward passes of `batch_size` blank images to `blocks` (the deepest one)."""
    image = backbone.preprocess(Image.new("RGB", backbone.image_size, (128, 128, 128)))
    batch = image.unsqueeze(0).repeat(batch_size, 1, 1, 1)
    backbone.extract(batch, blocks)  # allocations and kernel choices happen here, not in the timing
    _synchronize(backbone)
    passes, started = 0, time.perf_counter()
    while True:
        backbone.extract(batch, blocks)
        _synchronize(backbone)
        passes += 1
        elapsed = time.perf_counter() - started
        if passes >= 2 and elapsed >= min_seconds:
            break
    return BatchTiming(batch_size=batch_size, images_per_s=passes * batch_size / elapsed, passes=passes)


def fastest_batch_size(
    backbone: Backbone,
    blocks: Sequence[int],
    *,
    candidates: Sequence[int] | None = None,
    min_seconds: float = 0.3,
    budget_s: float = 30.0,
    patience: int = 2,
) -> BatchChoice:
    """Time `candidates` (the device's defaults when None) with real forward passes and keep the fastest
    (`pick_fastest`); the sizes timed are in `timings`, for the worker's log and status page."""
    return pick_fastest(
        candidates or default_candidates(backbone),
        lambda size: time_batch_size(backbone, size, blocks, min_seconds=min_seconds),
        budget_s=budget_s,
        patience=patience,
    )


def pick_fastest(
    candidates: Sequence[int],
    measure: Callable[[int], BatchTiming],
    *,
    budget_s: float = 30.0,
    patience: int = 2,
) -> BatchChoice:
    """Measure the sizes in increasing order and keep the one with the most images per second.

    Stops early once `patience` sizes in a row ran slower than the best so far (throughput rarely comes
    back at larger sizes once it has fallen), or when `budget_s` is spent.
    """
    sizes = sorted({int(size) for size in candidates if int(size) > 0})
    if not sizes:
        raise ValueError("no batch size to try")
    timings: list[BatchTiming] = []
    started = time.perf_counter()
    worse_in_a_row = 0
    for size in sizes:
        timing = measure(size)
        best = max(timings, key=lambda t: t.images_per_s, default=None)
        timings.append(timing)
        worse_in_a_row = worse_in_a_row + 1 if best is not None and timing.images_per_s < best.images_per_s else 0
        if worse_in_a_row >= patience or time.perf_counter() - started > budget_s:
            break
    fastest = max(timings, key=lambda t: t.images_per_s)
    return BatchChoice(batch_size=fastest.batch_size, timings=timings)


def _synchronize(backbone: Backbone) -> None:
    if str(backbone.device).startswith("cuda"):
        torch.cuda.synchronize(backbone.device)
