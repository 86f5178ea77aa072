from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.cases.models import Case
from webapp.teams.models import Team


class Submission(models.Model):
    """One uploaded image, waiting for or holding a verdict."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="submissions")
    case = models.ForeignKey(Case, on_delete=models.SET_NULL, null=True, blank=True, related_name="submissions")
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    image = models.FileField(upload_to="submissions/%Y/%m/%d/", max_length=300)
    original_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.PositiveBigIntegerField()
    image_format = models.CharField(max_length=10)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    metadata = models.JSONField(default=dict, blank=True)
    # An image the team already submitted: no second analysis, the earlier submission's verdict stands.
    duplicate_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="duplicates"
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["team", "sha256"])]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.sha256[:12]})"


class Verdict(models.Model):
    """What one head version said about one submission."""

    class Decision(models.TextChoices):
        REAL = "real", "Real photograph"
        KNOWN_GENERATOR = "known_generator", "Known generator"
        UNKNOWN_GENERATOR = "unknown_generator", "Unknown generator"

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="verdicts")
    head_version = models.ForeignKey("registry.HeadVersion", on_delete=models.PROTECT, related_name="verdicts")
    label = models.CharField(max_length=100)
    decision = models.CharField(max_length=20, choices=Decision.choices, db_index=True)
    score = models.FloatField()
    threshold = models.FloatField()
    probabilities = models.JSONField()
    nearest_references = models.JSONField(default=list)
    backbone = models.CharField(max_length=200)
    pretrained = models.BooleanField()
    elapsed_ms = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["submission", "head_version"], name="one_verdict_per_head_version"),
        ]

    def __str__(self) -> str:
        return f"{self.submission_id}: {self.decision} {self.label}"
