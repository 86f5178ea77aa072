"""Writes of the registry, one module per job: `generators`, `references` (upload, delete, bulk import,
their features), `training` (jobs: start, cancel, run, sweep) and `heads` (activation and rollback).
Re-attributing submissions with a new head is the submissions app's; the demo seeding is `webapp.core.demo`.

The names below are re-exported so that `from webapp.registry import services` reads as one service layer.
"""

from webapp.registry.services.errors import Actor, RegistryError, TrainingAlreadyRunning, TrainingNotQueued
from webapp.registry.services.generators import (
    generator_create,
    generator_delete,
    generator_ensure_real,
    generator_update,
)
from webapp.registry.services.heads import (
    COMPARED_METRICS,
    head_version_activate,
    head_version_activate_reviewed,
    head_version_may_auto_activate,
)
from webapp.registry.services.imports import (
    ImportSummary,
    import_job_create,
    import_job_run,
    import_jobs_sweep,
    registry_import_folder,
)
from webapp.registry.services.references import (
    ReferenceUpload,
    reference_block_features,
    reference_features_compute,
    reference_image_create,
    reference_image_delete,
    reference_images_upload,
    registry_seed_from_folder,
    training_blocks,
)
from webapp.registry.services.training import (
    head_train_now,
    training_job_cancel,
    training_job_run,
    training_job_start,
    training_jobs_sweep,
)

__all__ = [
    "COMPARED_METRICS",
    "Actor",
    "ImportSummary",
    "ReferenceUpload",
    "RegistryError",
    "TrainingAlreadyRunning",
    "TrainingNotQueued",
    "generator_create",
    "generator_delete",
    "generator_ensure_real",
    "generator_update",
    "head_train_now",
    "head_version_activate",
    "head_version_activate_reviewed",
    "head_version_may_auto_activate",
    "import_job_create",
    "import_job_run",
    "import_jobs_sweep",
    "reference_block_features",
    "reference_features_compute",
    "reference_image_create",
    "reference_image_delete",
    "reference_images_upload",
    "registry_import_folder",
    "registry_seed_from_folder",
    "training_blocks",
    "training_job_cancel",
    "training_job_run",
    "training_job_start",
    "training_jobs_sweep",
]
