from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from webapp.cases.models import Case
from webapp.common.models import StoredImage
from webapp.teams.models import Team


class Submission(StoredImage):
    """One uploaded image, waiting for or holding a verdict."""

    # Not columns: what the selectors set on the rows they read (`_annotated`, `verdicts_attach`).
    current_status: str
    current_error: str
    current_verdict: Verdict | None
    current_confirmation: Confirmation | None
    reading: Any  # webapp.submissions.selectors.VerdictReading, or None
    summary: str

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="submissions")
    case = models.ForeignKey(Case, on_delete=models.SET_NULL, null=True, blank=True, related_name="submissions")
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    image = models.FileField(upload_to="submissions/%Y/%m/%d/", max_length=300)
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
    # The latest verdict (of the earlier upload, for a duplicate), kept on the row in the transaction that
    # stores the verdict (`verdict_store`), so that the history filters and sorts by index instead of
    # computing every row's latest verdict. Empty until the first verdict.
    verdict = models.ForeignKey(
        "submissions.Verdict", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    verdict_decision = models.CharField(max_length=20, blank=True, default="")
    verdict_label = models.CharField(max_length=100, blank=True, default="")
    verdict_score = models.FloatField(null=True, blank=True)
    verdict_head_version = models.ForeignKey(
        "registry.HeadVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # What the file itself says about its origin (C2PA, XMP, PNG text, EXIF), read at upload: {"claims": [...],
    # "c2pa": {...} or null} as `attribution.provenance` gives them (`submission_provenance` compares them with
    # the latest verdict). `provenance_c2pa` is the C2PA manifest's validation ("" without one) and
    # `provenance_agreement` how the claims stand to the latest verdict (agrees, conflicts, none), set where
    # the verdict is stored: both for the history's filters.
    provenance = models.JSONField(default=dict, blank=True)
    provenance_c2pa = models.CharField(max_length=20, blank=True, default="")
    provenance_agreement = models.CharField(max_length=10, default="none")
    # The analyst's word on the verdict (`Confirmation.status`: confirmed, disputed; "" when nobody has
    # looked), kept on the row by `submission_confirm` for the history's filter.
    confirmation_status = models.CharField(max_length=10, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["team", "sha256"]),
            # The history's filters, each in the history's order (newest first).
            models.Index(fields=["team", "-created_at", "-id"], name="submission_team_recent"),
            models.Index(fields=["team", "verdict_decision", "-created_at", "-id"], name="submission_team_decision"),
            models.Index(fields=["team", "verdict_label", "-created_at", "-id"], name="submission_team_label"),
            models.Index(fields=["team", "case", "-created_at", "-id"], name="submission_team_case"),
            models.Index(
                fields=["team", "provenance_agreement", "-created_at", "-id"], name="submission_team_provenance"
            ),
            models.Index(fields=["team", "provenance_c2pa", "-created_at", "-id"], name="submission_team_c2pa"),
            models.Index(
                fields=["team", "confirmation_status", "-created_at", "-id"], name="submission_team_confirmation"
            ),
        ]

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
    # For an image rejected as unknown: the features the head judged (float32 bytes, L2-normalised as the
    # head saw them) and the space they live in (`<backbone identity>|<blocks>`), kept for the unknown pile's
    # clustering (webapp.feedback). Empty for real and known-generator verdicts.
    features = models.BinaryField(null=True, blank=True, editable=False)
    feature_space = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["submission", "head_version"], name="one_verdict_per_head_version"),
        ]

    def __str__(self) -> str:
        return f"{self.submission_id}: {self.decision} {self.label}"


class Confirmation(models.Model):
    """What a team member who knows an image's origin says of its verdict: confirmed (the image is `label`:
    a registered generator's slug, "real", or another generator named in words) or disputed (the verdict is
    wrong; `label` says what the image is instead, when the analyst knows). One per submission; the latest
    word replaces the earlier one (the audit log keeps each)."""

    class Status(models.TextChoices):
        CONFIRMED = "confirmed", "Confirmed"
        DISPUTED = "disputed", "Disputed"

    submission = models.OneToOneField(Submission, on_delete=models.CASCADE, related_name="confirmation")
    status = models.CharField(max_length=10, choices=Status.choices)
    # The registered class the label names (None for a generator named in words, or no label); `label` keeps
    # the words even if the generator is deleted later.
    generator = models.ForeignKey(
        "registry.Generator", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    label = models.CharField(max_length=100, blank=True, default="")
    note = models.TextField(blank=True, default="")
    # The verdict the analyst was looking at (the latest when they answered).
    verdict = models.ForeignKey(Verdict, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.submission_id}: {self.status} {self.label}"
