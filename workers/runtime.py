"""The engine inside a worker process: settings become engine configs, loaded once per process.

The backbone is loaded on first use and kept; the head is reloaded only when the active head
version changes (an activation or a rollback), so each task costs one small query, not a load.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from attribution.artifact import load_head
from attribution.backbone import Backbone, load_backbone
from attribution.config import BackboneConfig
from attribution.features import FeatureCache
from attribution.predict import Attributor

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


_lock = threading.Lock()
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
