"""What the analysts' knowledge and the unknown pile give back to the heads: field predictions on confirmed
submissions (a head's field accuracy), the unknown pile's clusters, and references promoted from submissions.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.registry.models import Generator, HeadVersion, ReferenceImage
from webapp.submissions.models import Submission


class FieldPrediction(models.Model):
    """What a head version says of a confirmed submission it has no verdict for (a candidate trained after the
    confirmation, or a head that never judged the image): computed by a worker from the stored image, so that
    every head's field accuracy is measured on the same confirmed images. A verdict, where one exists, is the
    head's word and wins over a field prediction."""

    head_version = models.ForeignKey(HeadVersion, on_delete=models.CASCADE, related_name="field_predictions")
    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="field_predictions")
    label = models.CharField(max_length=100)
    decision = models.CharField(max_length=20)
    score = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["head_version", "submission"], name="one_field_prediction_per_head"),
        ]

    def __str__(self) -> str:
        return f"v{self.head_version_id} on {self.submission_id}: {self.decision} {self.label}"


class UnknownCluster(models.Model):
    """A group of submissions rejected as unknown whose features lie close together: perhaps a generator
    nobody has registered yet. Kept across the periodic re-clustering (a new grouping takes over the id of the
    open cluster it shares most members with); registered or dismissed clusters no longer change."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        REGISTERED = "registered", "Registered"
        DISMISSED = "dismissed", "Dismissed"

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN, db_index=True)
    # The feature space its members were clustered in (`Verdict.feature_space`).
    feature_space = models.CharField(max_length=200)
    size = models.PositiveIntegerField(default=0)
    # The known class most members were closest to (the verdicts' `closest_known`), and the share that were.
    nearest_known = models.CharField(max_length=100, blank=True, default="")
    nearest_known_share = models.FloatField(default=0.0)
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    generator = models.ForeignKey(Generator, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-size", "-id"]

    def __str__(self) -> str:
        return f"unknown cluster {self.pk} ({self.size}, {self.status})"


class UnknownClusterMember(models.Model):
    cluster = models.ForeignKey(UnknownCluster, on_delete=models.CASCADE, related_name="members")
    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="unknown_clusters")
    # Cosine distance to the cluster's centre: the review lists the farthest (likely outliers) first.
    distance = models.FloatField(default=0.0)

    class Meta:
        ordering = ["distance", "id"]
        constraints = [
            models.UniqueConstraint(fields=["cluster", "submission"], name="one_membership_per_cluster"),
        ]

    def __str__(self) -> str:
        return f"{self.submission_id} in cluster {self.cluster_id}"


class ReferencePromotion(models.Model):
    """A reference image that came from a submission: promoted after an analyst's confirmation, or with an
    unknown cluster registered as a new generator. The reference is a copy of the file; the link stays."""

    class Source(models.TextChoices):
        CONFIRMATION = "confirmation", "Confirmed submission"
        CLUSTER = "cluster", "Unknown cluster"

    reference = models.OneToOneField(ReferenceImage, on_delete=models.CASCADE, related_name="promotion")
    submission = models.ForeignKey(
        Submission, on_delete=models.SET_NULL, null=True, blank=True, related_name="promotions"
    )
    source = models.CharField(max_length=12, choices=Source.choices)
    cluster = models.ForeignKey(
        UnknownCluster, on_delete=models.SET_NULL, null=True, blank=True, related_name="promotions"
    )
    promoted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"reference {self.reference_id} from submission {self.submission_id}"
