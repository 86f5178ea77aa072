"""Registry services on the real database: generators, reference images, training jobs, activation."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import override_settings
from PIL import Image

from tests.fixtures_registry import REFERENCES_PER_CLASS
from webapp.audit.models import AuditEvent
from webapp.common.uploads import UploadRejected
from webapp.registry import services
from webapp.registry.models import Generator, HeadVersion, ReferenceImage, TrainingJob
from webapp.registry.selectors import head_version_active, head_version_candidate, training_job_current


def png_file(
    color: tuple[int, int, int], name: str = "image.png", size: tuple[int, int] = (32, 24)
) -> ContentFile:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return ContentFile(buffer.getvalue(), name=name)


def add_generator(staff: User, slug: str = "sdxl") -> Generator:
    return services.generator_create(
        actor=staff, name=slug.upper(), slug=slug, family=Generator.Family.DIFFUSION
    )


def test_it_has_the_builtin_real_generator_after_migrate(db: None) -> None:
    real = Generator.objects.get(slug="real")
    assert real.builtin and real.is_active and real.family == Generator.Family.REAL
    assert services.generator_ensure_real() == real


def test_it_creates_and_updates_a_generator_with_an_audit_trail(staff: User) -> None:
    generator = services.generator_create(
        actor=staff, name="SDXL", slug="sdxl", family="diffusion", description="Stability", release="1.0"
    )
    services.generator_update(
        actor=staff, generator=generator, description="Stable Diffusion XL", is_active=False
    )
    generator.refresh_from_db()
    assert (generator.description, generator.is_active) == ("Stable Diffusion XL", False)
    actions = list(AuditEvent.objects.filter(object_type="generator").values_list("action", flat=True))
    assert sorted(actions) == ["generator_create", "generator_update"]


def test_it_refuses_an_invalid_or_duplicate_generator(staff: User) -> None:
    add_generator(staff, "sdxl")
    with pytest.raises(ValidationError) as duplicate:
        services.generator_create(actor=staff, name="Other", slug="sdxl", family="diffusion")
    assert "slug" in duplicate.value.message_dict
    with pytest.raises(ValidationError) as family:
        services.generator_create(actor=staff, name="X", slug="x", family="painting")
    assert "family" in family.value.message_dict


def test_it_keeps_real_from_being_renamed_deactivated_or_deleted(staff: User) -> None:
    real = services.generator_ensure_real()
    for change in ({"name": "Photos"}, {"slug": "photo"}, {"is_active": False}, {"family": "gan"}):
        with pytest.raises(services.RegistryError, match="built in"):
            services.generator_update(actor=staff, generator=real, **change)
    with pytest.raises(services.RegistryError, match="built in"):
        services.generator_delete(actor=staff, generator=real)
    services.generator_update(actor=staff, generator=real, description="Camera photographs")
    real.refresh_from_db()
    assert (real.slug, real.name, real.description) == ("real", "Real photograph", "Camera photographs")


def test_it_stores_hashes_and_deduplicates_reference_images(staff: User) -> None:
    generator = add_generator(staff)
    reference, created = services.reference_image_create(
        generator=generator, upload=png_file((200, 10, 10), "a.png"), uploaded_by=staff, enqueue=False
    )
    again, created_again = services.reference_image_create(
        generator=generator, upload=png_file((200, 10, 10), "copy.png"), uploaded_by=staff, enqueue=False
    )
    assert created and not created_again and again.pk == reference.pk
    assert len(reference.sha256) == 64 and (reference.width, reference.height, reference.image_format) == (
        32,
        24,
        "PNG",
    )
    assert reference.image.name.startswith("references/") and default_storage.exists(reference.image.name)
    # The same image may be a reference of another generator (dedupe is per generator).
    _, created_elsewhere = services.reference_image_create(
        generator=add_generator(staff, "other"),
        upload=png_file((200, 10, 10)),
        uploaded_by=staff,
        enqueue=False,
    )
    assert created_elsewhere


def test_it_checks_each_file_of_a_batch_on_its_own(staff: User) -> None:
    generator = add_generator(staff)
    files = [
        png_file((1, 2, 3), "good-1.png"),
        ContentFile(b"this is not an image", name="notes.jpg"),
        ContentFile(b"", name="empty.png"),
        png_file((4, 5, 6), "good-2.png"),
        png_file((1, 2, 3), "good-1-again.png"),
    ]
    results = services.reference_images_upload(
        generator=generator, files=files, uploaded_by=staff, enqueue=False
    )
    outcome = {r.name: ("added" if r.created else r.error or "duplicate") for r in results}
    assert outcome["good-1.png"] == outcome["good-2.png"] == "added"
    assert outcome["good-1-again.png"] == "duplicate"
    assert "not a recognised image" in outcome["notes.jpg"]
    assert "empty" in outcome["empty.png"]
    assert generator.references.count() == 2
    with override_settings(UPLOAD_MAX_BYTES=20):
        with pytest.raises(UploadRejected, match="over the limit"):
            services.reference_image_create(
                generator=generator, upload=png_file((9, 9, 9)), uploaded_by=staff
            )


def test_it_trains_a_candidate_then_activates_and_rolls_back(
    active_head: HeadVersion, staff: User, engine
) -> None:
    backbone, cache = engine
    candidate = services.head_train_now(actor=staff, backbone=backbone, cache=cache)
    assert candidate.version == active_head.version + 1 and candidate.status == HeadVersion.Status.CANDIDATE
    assert head_version_candidate() == candidate and head_version_active() == active_head
    assert candidate.classes == ["bilinear-s1", "nearest-s1", "pixelshuffle-s1", "real", "tconv-s1"]
    assert candidate.backbone == backbone.identity and candidate.pretrained is False
    # The threshold is on the head's own open-set score (chosen by the held-out generators' OSCR): a log
    # probability or a logit is not bounded by 1, but the head records which score it is.
    assert candidate.blocks == [8] and candidate.metrics["score_method"] in candidate.metrics["score_comparison"]
    assert candidate.metrics["known_acceptance_at_threshold"] >= 0.9
    for key in ("accuracy", "auroc", "oscr"):
        assert 0.0 <= candidate.metrics[key] <= 1.0
    assert candidate.metrics["accuracy"] > 0.5  # five classes: chance is 0.2
    assert set(candidate.metrics["per_class_recall"]) == set(candidate.classes)
    assert len(candidate.manifest) == ReferenceImage.objects.count() == 5 * REFERENCES_PER_CLASS
    assert {item["sha256"] for item in candidate.manifest} == set(
        ReferenceImage.objects.values_list("sha256", flat=True)
    )
    assert default_storage.exists(candidate.artifact.name) and candidate.artifact.name.startswith("heads/")
    job = TrainingJob.objects.get(head_version=candidate)
    assert job.status == TrainingJob.Status.DONE and job.progress == 1.0 and job.requested_by == staff
    assert "features" in job.log and "holdout" in job.log and "metrics: accuracy" in job.log

    services.head_version_activate(head_version=candidate, actor=staff)
    active_head.refresh_from_db()
    assert head_version_active() == candidate and active_head.status == HeadVersion.Status.RETIRED
    services.head_version_activate(head_version=active_head, actor=staff)
    candidate.refresh_from_db()
    assert head_version_active() == active_head and candidate.status == HeadVersion.Status.RETIRED
    events = list(AuditEvent.objects.filter(action__in=["activate", "rollback"]).order_by("id"))
    assert [(e.action, e.detail["version"], e.detail["previous"]) for e in events] == [
        ("activate", 1, None),
        ("activate", 2, 1),
        ("rollback", 1, 2),
    ]
    # Activating the active head again changes nothing.
    services.head_version_activate(head_version=active_head, actor=staff)
    assert AuditEvent.objects.filter(action__in=["activate", "rollback"]).count() == len(events)


def test_it_allows_one_training_at_a_time(registry_references: dict[str, int], staff: User) -> None:
    first = services.training_job_start(requested_by=staff, enqueue=False)
    with pytest.raises(services.TrainingAlreadyRunning, match=f"Training job {first.pk} is already queued"):
        services.training_job_start(requested_by=staff, enqueue=False)
    services.training_job_cancel(job=first, actor=staff)
    assert services.training_job_start(requested_by=staff, enqueue=False).pk != first.pk


def test_it_needs_two_classes_with_references_to_train(staff: User) -> None:
    generator = add_generator(staff)
    services.reference_image_create(
        generator=generator, upload=png_file((1, 1, 1)), uploaded_by=staff, enqueue=False
    )
    with pytest.raises(services.RegistryError, match="at least two active generators"):
        services.training_job_start(requested_by=staff, enqueue=False)
    assert not TrainingJob.objects.exists()


def test_it_cancels_a_queued_job_at_once_and_a_running_one_at_its_next_step(
    registry_references: dict[str, int], staff: User, engine
) -> None:
    backbone, cache = engine
    queued = services.training_job_start(requested_by=staff, enqueue=False)
    services.training_job_cancel(job=queued, actor=staff)
    queued.refresh_from_db()
    assert queued.status == TrainingJob.Status.CANCELLED and queued.finished_at is not None
    # A task that arrives for it later does nothing.
    assert services.training_job_run(job_id=queued.pk, backbone=backbone, cache=cache).status == "cancelled"

    running = services.training_job_start(requested_by=staff, enqueue=False)
    TrainingJob.objects.filter(pk=running.pk).update(status=TrainingJob.Status.RUNNING)  # a worker claimed it
    services.training_job_cancel(job=running, actor=staff)
    running.refresh_from_db()
    assert running.status == TrainingJob.Status.RUNNING and running.cancel_requested
    with pytest.raises(services.TrainingAlreadyRunning):
        services.training_job_start(requested_by=staff, enqueue=False)
    finished = services.training_job_run(job_id=running.pk, backbone=backbone, cache=cache)
    assert finished.status == TrainingJob.Status.CANCELLED and finished.head_version is None
    assert not HeadVersion.objects.exists()
    with pytest.raises(services.RegistryError, match="nothing to cancel"):
        services.training_job_cancel(job=finished, actor=staff)


# The failing generator has one reference image (its file gone): the minimum is lowered for it.
@override_settings(TRAINING_MIN_REFERENCES=1)
def test_it_records_why_a_training_failed(registry_references: dict[str, int], staff: User, engine) -> None:
    backbone, cache = engine
    generator = add_generator(staff, "lost")
    reference, _ = services.reference_image_create(
        generator=generator, upload=png_file((7, 7, 7)), uploaded_by=staff, enqueue=False
    )
    default_storage.delete(reference.image.name)
    job = services.training_job_run(
        job_id=services.training_job_start(requested_by=staff, enqueue=False).pk,
        backbone=backbone,
        cache=cache,
    )
    assert job.status == TrainingJob.Status.FAILED
    assert f"reference image file {reference.image.name} is missing" in job.error
    assert training_job_current() is None  # a failed job no longer blocks the next one


def test_it_activates_a_head_itself_when_the_setting_allows(
    registry_references: dict[str, int], staff: User, engine
) -> None:
    backbone, cache = engine
    with override_settings(HEAD_AUTO_ACTIVATE=True):
        head = services.head_train_now(actor=staff, backbone=backbone, cache=cache)
    head.refresh_from_db()
    assert head.status == HeadVersion.Status.ACTIVE  # no active head to compare with: the first one goes live
    assert AuditEvent.objects.filter(
        action="activate", detail__automatic=True, object_id=str(head.pk)
    ).exists()
    assert "activated automatically" in TrainingJob.objects.get(head_version=head).log


def test_it_compares_metrics_for_auto_activation(db: None) -> None:
    metrics = {"accuracy": 0.9, "auroc": 0.8, "oscr": 0.7}
    HeadVersion.objects.create(
        version=1, status=HeadVersion.Status.ACTIVE, artifact="heads/v1.npz", head_kind="linear",
        classes=["real", "x"], blocks=[8], backbone="b", pretrained=False, threshold=0.5, metrics=metrics,
    )  # fmt: skip
    candidate = HeadVersion(metrics=dict(metrics))
    with override_settings(HEAD_AUTO_ACTIVATE_TOLERANCE=0.02):
        assert services.head_version_may_auto_activate(candidate=candidate)
        candidate.metrics |= {"oscr": 0.681, "accuracy": 0.99}
        assert services.head_version_may_auto_activate(candidate=candidate)
        candidate.metrics["oscr"] = 0.67
        assert not services.head_version_may_auto_activate(candidate=candidate)
        candidate.metrics["oscr"] = None  # a candidate that could not measure OSCR
        assert not services.head_version_may_auto_activate(candidate=candidate)
    with override_settings(HEAD_AUTO_ACTIVATE_TOLERANCE=0.05):
        candidate.metrics["oscr"] = 0.67
        assert services.head_version_may_auto_activate(candidate=candidate)
