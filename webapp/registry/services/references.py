"""Writes of reference images: upload (one, many, a folder), delete, and their features in the cache.

The engine (backbone, feature cache) is passed in by the caller, a worker task or a management command,
so the web process never loads a model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from webapp.audit.services import audit_record
from webapp.common.tasks import task_send_on_commit
from webapp.common.uploads import UploadRejected, display_name, upload_count_validate, upload_validate
from webapp.registry.models import Generator, ReferenceImage
from webapp.registry.services.errors import Actor, RegistryError
from webapp.teams.models import Team
from webapp.teams.selectors import user_or_none

if TYPE_CHECKING:
    from attribution.backbone import Backbone
    from attribution.features import FeatureCache

FEATURES_TASK = "workers.tasks.compute_reference_features"
# Images per forward pass for reference features when the worker's batch size is measured ("auto").
FEATURE_BATCH_SIZE = 32


def _batched(items: Sequence[int], size: int) -> list[list[int]]:
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


@dataclass(frozen=True)
class ReferenceUpload:
    """What became of one uploaded file: a new reference, a duplicate of one, or a rejection."""

    name: str
    reference: ReferenceImage | None
    created: bool
    error: str = ""


def reference_image_create(
    *,
    generator: Generator,
    upload: File,
    uploaded_by: Actor,
    enqueue: bool = True,
    source_team: Team | None = None,
) -> tuple[ReferenceImage, bool]:
    """Check, hash and store one reference image; an image the generator already has is returned as is.
    `source_team`: the team whose submission it is a copy of (only they and registry admins see the file).

    Raises `UploadRejected` (message for the user) when the file fails the submissions' upload checks.
    With `enqueue`, its features are computed on a worker after commit.
    """
    checked = upload_validate(uploaded_file=upload)
    existing = generator.references.filter(sha256=checked.sha256).first()
    if existing is not None:
        return existing, False
    reference = ReferenceImage(
        generator=generator,
        uploaded_by=user_or_none(uploaded_by),
        source_team=source_team,
    )
    reference.describe_upload(checked)
    upload.seek(0)
    reference.image.save(
        f"{generator.slug}-{checked.sha256[:16]}{checked.extension}",
        upload,
        save=False,
    )
    try:
        with transaction.atomic():
            reference.save()
    except IntegrityError:  # the same image uploaded twice at the same moment
        reference.image.delete(save=False)
        return generator.references.get(sha256=checked.sha256), False
    if enqueue:
        task_send_on_commit(FEATURES_TASK, [reference.pk])
    return reference, True


def reference_images_upload(
    *, generator: Generator, files: Iterable[File], uploaded_by: Actor, enqueue: bool = True
) -> list[ReferenceUpload]:
    """Add many files at once: each is checked on its own (a rejected file does not stop the others),
    and one task computes the features of all the new ones."""
    uploads = list(files)
    upload_count_validate(count=len(uploads))
    results = []
    for upload in uploads:
        name = display_name(upload.name)
        try:
            reference, created = reference_image_create(
                generator=generator, upload=upload, uploaded_by=uploaded_by, enqueue=False
            )
        except UploadRejected as rejected:
            results.append(ReferenceUpload(name=name, reference=None, created=False, error=str(rejected)))
        else:
            results.append(ReferenceUpload(name=name, reference=reference, created=created))
    new_ids = [r.reference.pk for r in results if r.created and r.reference is not None]
    if new_ids:
        audit_record(
            actor=uploaded_by, action="reference_upload", target=generator, detail={"count": len(new_ids)}
        )
        if enqueue:
            task_send_on_commit(FEATURES_TASK, new_ids)
    return results


def reference_image_delete(*, actor: Actor, reference: ReferenceImage) -> None:
    name = reference.image.name
    audit_record(
        actor=actor,
        action="reference_delete",
        target=reference.generator,
        detail={"sha256": reference.sha256},
    )
    reference.delete()
    if name:
        transaction.on_commit(lambda: default_storage.delete(name))


def reference_block_features(
    references: Sequence[ReferenceImage],
    *,
    backbone: Backbone,
    cache: FeatureCache,
    blocks: Sequence[int],
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, np.ndarray]:
    """Features `{block: [N, D]}` of the references, from the cache; the missing ones are read through the
    storage API and computed in batches (and cached), every block of a batch in one forward pass."""
    from attribution.features import extract_features

    take = backbone.validate_blocks(blocks)
    by_block = {block: np.zeros((len(references), backbone.width), dtype=np.float32) for block in take}
    missing = []
    for row, reference in enumerate(references):
        vectors = [cache.get(reference.sha256, backbone.identity, block) for block in take]
        if all(vector is not None for vector in vectors):
            for block, vector in zip(take, vectors, strict=True):
                by_block[block][row] = vector
        else:
            missing.append(row)
    done = len(references) - len(missing)
    if progress is not None:
        progress(done, len(references))
    batch_size = settings.ATTRIBUTION_BATCH_SIZE or FEATURE_BATCH_SIZE
    for rows in _batched(missing, batch_size):
        sources = [_read_bytes(references[row].image.name or "") for row in rows]
        features = extract_features(
            backbone,
            sources,
            take,
            sha256s=[references[row].sha256 for row in rows],
            cache=cache,
            batch_size=batch_size,
        )
        for block in take:
            by_block[block][rows] = features[block]
        done += len(rows)
        if progress is not None:
            progress(done, len(references))
    return by_block


def training_blocks(*, backbone: Backbone) -> list[int]:
    """The blocks a training job reads: the head's (ATTRIBUTION_BLOCKS) and, for the per-block sweep, every
    block of the backbone. One forward pass gives them all."""
    pinned = settings.ATTRIBUTION_BLOCKS if isinstance(settings.ATTRIBUTION_BLOCKS, list) else []
    return sorted({int(block) for block in pinned} | set(range(backbone.num_blocks)))


def reference_features_compute(
    *, reference_ids: Sequence[int], backbone: Backbone, cache: FeatureCache
) -> int:
    """Fill the feature cache for these references (those deleted meanwhile are skipped) with every block a
    training job reads, so that the training finds them all cached; returns how many."""
    references = list(ReferenceImage.objects.filter(pk__in=reference_ids).order_by("pk"))
    reference_block_features(
        references, backbone=backbone, cache=cache, blocks=training_blocks(backbone=backbone)
    )
    return len(references)


def _read_bytes(name: str) -> bytes:
    try:
        with default_storage.open(name, "rb") as handle:
            return bytes(handle.read())
    except FileNotFoundError:
        raise RegistryError(f"reference image file {name} is missing from storage") from None


def registry_seed_from_folder(
    *,
    source_dir: Path,
    classes: Sequence[str],
    per_class: int,
    actor: Actor,
    family: str = Generator.Family.GAN,
    description: str = "",
    enqueue: bool = False,
) -> dict[str, int]:
    """Register each class folder of an ImageFolder (`source_dir/<slug>/*`) as a generator ("real" is the
    built-in one) with its first `per_class` images as references, through the bulk import
    (`registry_import_folder`); existing ones are kept, so running it twice adds nothing. Raises
    `RegistryError` when a folder has no image or a file is refused. Returns the new references per class."""
    from webapp.registry.services.imports import registry_import_folder

    summary = registry_import_folder(
        root=source_dir,
        actor=actor,
        classes=list(classes),
        per_class=per_class,
        create_generators=True,
        enqueue=enqueue,
        family=family,
        description=description,
    )
    errors = [
        f"{name}: {', '.join(detail['examples'])}: {reason}"
        for name, entry in summary.classes.items()
        for reason, detail in entry.refused.items()
    ]
    if empty := [name for name, entry in summary.classes.items() if entry.added + entry.present == 0]:
        errors.append(f"{', '.join(str(source_dir / name) for name in empty)}: no images")
    if errors:
        raise RegistryError("; ".join(errors))
    return {name: entry.added for name, entry in summary.classes.items()}
