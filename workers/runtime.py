"""The engine inside a worker process: settings become engine configs, loaded once per process.

The backbone is loaded on first use and kept; the head is reloaded only when the active head
version changes (an activation or a rollback), so each task costs one small query, not a load.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from PIL import Image

from attribution.artifact import load_head
from attribution.backbone import Backbone, load_backbone
from attribution.config import BackboneConfig
from attribution.features import FeatureCache
from attribution.predict import Attributor
from attribution.tuning import BatchChoice, fastest_batch_size

logger = logging.getLogger(__name__)


def backbone_config_from_settings() -> BackboneConfig:
    return BackboneConfig(
        model_name=settings.ATTRIBUTION_BACKBONE,
        pretrained=settings.ATTRIBUTION_PRETRAINED or None,
        seed=settings.ATTRIBUTION_SEED,
    )


def device_from_settings() -> str:
    if settings.ATTRIBUTION_DEVICE != "auto":
        return str(settings.ATTRIBUTION_DEVICE)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@lru_cache(maxsize=1)
def get_backbone() -> Backbone:
    """The process's backbone (loaded once)."""
    settings.MODEL_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    backbone = load_backbone(
        backbone_config_from_settings(),
        device=device_from_settings(),
        precision=settings.ATTRIBUTION_PRECISION,
        cache_dir=str(settings.MODEL_CACHE_DIR),
    )
    logger.info("backbone %s on %s (pretrained: %s)", backbone.identity, backbone.device, backbone.pretrained)
    return backbone


@lru_cache(maxsize=1)
def get_feature_cache() -> FeatureCache:
    return FeatureCache(Path(settings.FEATURE_CACHE_DIR))


@dataclass(frozen=True)
class LoadedHead:
    head_version_id: int
    version: int
    artifact_name: str
    attributor: Attributor


_lock = threading.RLock()
_loaded: LoadedHead | None = None


def load_attributor(*, head_version_id: int, version: int, artifact_name: str) -> LoadedHead:
    """The attributor for a head version, reusing the loaded one when it is the same head."""
    global _loaded
    with _lock:
        current = _loaded
        if current is not None and (current.head_version_id, current.artifact_name) == (head_version_id, artifact_name):
            return current
        backbone = get_backbone()
        # Storage may be remote (S3 and the like): copy the artifact to a local temporary file.
        with default_storage.open(artifact_name, "rb") as src, tempfile.NamedTemporaryFile(suffix=".npz") as tmp:
            tmp.write(src.read())
            tmp.flush()
            head = load_head(tmp.name, backbone_identity=backbone.identity)
        _loaded = LoadedHead(
            head_version_id=head_version_id,
            version=version,
            artifact_name=artifact_name,
            attributor=Attributor(backbone, head, nearest_k=settings.ATTRIBUTION_NEAREST_K),
        )
        logger.info("loaded head v%s (%s)", version, artifact_name)
        return _loaded


def loaded_head_version() -> int | None:
    return _loaded.version if _loaded is not None else None


def warm_blocks() -> list[int]:
    """The blocks a warm-up and the batch-size timing run to: those of the configured head, or the
    backbone's middle block when they are chosen by training ("auto")."""
    blocks = settings.ATTRIBUTION_BLOCKS
    if isinstance(blocks, list | tuple) and blocks:
        return [int(block) for block in blocks]
    return [get_backbone().num_blocks * 2 // 3]


_batch_choice: BatchChoice | None = None


def batch_size() -> int:
    """Images per forward pass: ATTRIBUTION_BATCH_SIZE, or (when "auto") the fastest size measured on this
    process's device, timed once."""
    global _batch_choice
    if settings.ATTRIBUTION_BATCH_SIZE is not None:
        return int(settings.ATTRIBUTION_BATCH_SIZE)
    with _lock:
        if _batch_choice is None:
            _batch_choice = fastest_batch_size(
                get_backbone(), warm_blocks(), candidates=settings.ATTRIBUTION_BATCH_CANDIDATES or None
            )
            logger.info(
                "batch size %d chosen: %s",
                _batch_choice.batch_size,
                ", ".join(f"{t.batch_size}: {t.images_per_s:.1f} images/s" for t in _batch_choice.timings),
            )
        return _batch_choice.batch_size


def batch_choice() -> BatchChoice | None:
    """The measured batch sizes when "auto" has chosen one in this process (None otherwise)."""
    return _batch_choice


def warm_up() -> float:
    """Load the backbone, run one small pass to the configured blocks (allocations, kernel choices and lazy
    initialisation happen here, not in the first real group) and, with ATTRIBUTION_BATCH_SIZE=auto, time
    the batch sizes; its seconds."""
    started = time.perf_counter()
    backbone = get_backbone()
    blank = [Image.new("RGB", backbone.image_size, (128, 128, 128))] * 2
    backbone.extract(blank, warm_blocks())
    size = batch_size()
    seconds = time.perf_counter() - started
    logger.info(
        "warm-up: backbone %s on %s (%s), batch size %d%s, ready in %.1f s",
        backbone.identity, backbone.device, backbone.precision, size,
        " (auto)" if settings.ATTRIBUTION_BATCH_SIZE is None else "", seconds,
    )
    return seconds


@dataclass
class Throughput:
    """What this process has attributed since it started: groups, images and busy seconds (from
    claiming the group to storing its verdicts), and the last group's size and rate."""

    groups: int = 0
    images: int = 0
    busy_s: float = 0.0
    last_group_size: int = 0
    last_images_per_s: float = 0.0

    def record(self, images: int, seconds: float) -> None:
        self.groups += 1
        self.images += images
        self.busy_s += seconds
        self.last_group_size = images
        self.last_images_per_s = images / seconds if seconds > 0 else 0.0

    @property
    def images_per_s(self) -> float:
        """Images per busy second since the process started."""
        return self.images / self.busy_s if self.busy_s > 0 else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "images_per_s": self.images_per_s}


throughput = Throughput()
