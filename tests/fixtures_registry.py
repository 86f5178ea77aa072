"""Registry fixtures: the synthetic benchmark (made once per session) and an active head trained on it.

The feature cache lives under the session's VAR_DIR, shared with the worker processes the tests start,
so each benchmark image goes through the backbone once per session; a head trains in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth.models import User

from webapp.core.demo import registry_seed_demo
from webapp.registry.models import HeadVersion
from webapp.registry.services import registry_seed_from_folder

SYNTH_PER_CLASS = 16  # images per class in the session's benchmark
REFERENCES_PER_CLASS = 10  # the first ten of each known class become the active head's references


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m attribution synth` output: 9 classes of SYNTH_PER_CLASS images, seed 0, made at the
    backbone's input size as the demo makes them (see `registry_seed_demo`)."""
    from attribution.synth import make_benchmark
    from workers.runtime import get_backbone

    root = tmp_path_factory.mktemp("synth")
    make_benchmark(root, seed=0, per_class=SYNTH_PER_CLASS, size=get_backbone().image_size[0])
    return root


@pytest.fixture
def engine():  # type: ignore[no-untyped-def]
    """The process's backbone and feature cache, as a worker holds them (loaded once per session)."""
    from workers.runtime import get_backbone, get_feature_cache

    return get_backbone(), get_feature_cache()


@pytest.fixture
def registry_references(db: None, staff: User, synth_dir: Path) -> dict[str, int]:
    """The demo registry without a head: "real" and the benchmark's four known generators with
    REFERENCES_PER_CLASS reference images each (enough to train; nothing trained)."""
    from attribution.synth import DEFAULT_KNOWN

    return registry_seed_from_folder(
        source_dir=synth_dir, classes=DEFAULT_KNOWN, per_class=REFERENCES_PER_CLASS, actor=staff
    )


@pytest.fixture
def active_head(db: None, staff: User, synth_dir: Path, engine) -> HeadVersion:  # type: ignore[no-untyped-def]
    """Head v1, active: "real" and the benchmark's four known generators, REFERENCES_PER_CLASS references
    each, registered and trained by the demo's own service. Works under `transactional_db` (as the
    `worker` fixture needs)."""
    return registry_seed_demo(
        actor=staff, load_engine=lambda: engine, per_class=REFERENCES_PER_CLASS, source_dir=synth_dir
    ).head_version


def image_features(paths: list[Path], engine) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Concatenated head-block features `[N, D]` of image files, through the shared feature cache."""
    from attribution.features import concat_blocks, extract_features

    backbone, cache = engine
    blocks = list(settings.ATTRIBUTION_BLOCKS)
    return concat_blocks(extract_features(backbone, [str(p) for p in paths], blocks, cache=cache), blocks)


def head_version_copy(
    head: HeadVersion, *, version: int, status: str = HeadVersion.Status.CANDIDATE
) -> HeadVersion:
    """Another version row with `head`'s artifact and metrics: for pages and activations that never load
    the artifact, without the cost of a second training."""
    fields = {
        f.name: getattr(head, f.name) for f in HeadVersion._meta.concrete_fields if f.name not in ("id",)
    }
    return HeadVersion.objects.create(
        **(fields | {"version": version, "status": status, "activated_at": None})
    )
