from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from webapp.common.models import StoredImage
from webapp.teams.models import Team


class Generator(models.Model):
    """A class the heads can attribute to: "real" or a known image generator."""

    class Family(models.TextChoices):
        REAL = "real", "Real"
        GAN = "gan", "GAN"
        DIFFUSION = "diffusion", "Diffusion"
        AUTOREGRESSIVE = "autoregressive", "Autoregressive"
        OTHER = "other", "Other"

    REAL_SLUG = "real"

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    family = models.CharField(max_length=20, choices=Family.choices, default=Family.OTHER)
    description = models.TextField(blank=True)
    release = models.CharField(max_length=50, blank=True, help_text="Version or release date")
    is_active = models.BooleanField(default=True, help_text="Inactive generators are left out of training")
    # Other names the generator goes by in a file's provenance (C2PA claim generator, a checkpoint file name,
    # a model hash): a claim naming one of them names this generator.
    aliases = models.JSONField(default=list, blank=True, help_text="Names and model hashes it goes by")
    builtin = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ReferenceImage(StoredImage):
    """A few-shot example of a generator's output (or of real photographs)."""

    generator = models.ForeignKey(Generator, on_delete=models.CASCADE, related_name="references")
    image = models.FileField(upload_to="references/%Y/%m/", max_length=300)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The team whose submission the image came from (promoted from a confirmed submission or an unknown
    # cluster), None for images a registry admin uploaded: only that team and registry admins see the file
    # (`reference_image_list`, `media_file_visible`); every head still trains on it.
    source_team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["generator", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["generator", "sha256"], name="one_reference_per_image"),
        ]

    def __str__(self) -> str:
        return f"{self.generator.slug}/{self.original_name}"


class HeadVersion(models.Model):
    """A trained classification head: the artifact file, its metrics and what it was trained on."""

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    version = models.PositiveIntegerField(unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CANDIDATE)
    artifact = models.FileField(upload_to="heads/", max_length=300)
    head_kind = models.CharField(max_length=20)
    classes = models.JSONField()
    blocks = models.JSONField()
    backbone = models.CharField(max_length=200)
    pretrained = models.BooleanField()
    threshold = models.FloatField()
    metrics = models.JSONField(default=dict)
    manifest = models.JSONField(default=list, help_text="Training images: generator slug and sha256")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=Q(status="active"), name="one_active_head"),
        ]

    def __str__(self) -> str:
        return f"head v{self.version}"


class TrainingJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    RUNNING_STATES = (Status.QUEUED, Status.RUNNING)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    step = models.CharField(max_length=100, blank=True)
    progress = models.FloatField(default=0.0)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    head_version = models.OneToOneField(
        HeadVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="training_job"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One training at a time, enforced by the database rather than by a race-prone check.
            models.UniqueConstraint(
                fields=["cancel_requested"],
                condition=Q(status__in=["queued", "running"]),
                name="one_training_at_a_time",
            ),
        ]

    def __str__(self) -> str:
        return f"training job {self.pk} ({self.status})"


class ImportJob(models.Model):
    """A zip or tar of an ImageFolder uploaded through the API, imported as reference images by a worker."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    archive = models.FileField(upload_to="imports/", max_length=300)
    original_name = models.CharField(max_length=255)
    per_class = models.PositiveIntegerField(null=True, blank=True)
    create_generators = models.BooleanField(default=False)
    processed = models.PositiveIntegerField(default=0, help_text="Archive entries looked at so far")
    total = models.PositiveIntegerField(default=0, help_text="File entries in the archive")
    summary = models.JSONField(default=dict, help_text="Per class: added, already present, refused with reasons")
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"import job {self.pk} ({self.status})"

    @property
    def progress(self) -> float:
        return round(self.processed / self.total, 4) if self.total else (1.0 if self.status == "done" else 0.0)
