"""Reads of the registry: generators, reference images, head versions and training jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Prefetch, QuerySet

from webapp.cases.models import Case
from webapp.registry.models import Generator, HeadVersion, ReferenceImage, TrainingJob
from webapp.submissions.models import Submission, Verdict
from webapp.teams.models import Team
from webapp.teams.selectors import team_for_user, user_is_registry_admin, user_is_team_admin


def generator_list(*, active_only: bool = False) -> QuerySet[Generator]:
    """Generators with `reference_count`, "real" first, then by name."""
    generators = Generator.objects.annotate(reference_count=Count("references")).order_by("-builtin", "name")
    return generators.filter(is_active=True) if active_only else generators


def reference_image_list(*, generator: Generator) -> QuerySet[ReferenceImage]:
    return generator.references.order_by("-created_at", "-id")


def reference_images_for_training() -> list[ReferenceImage]:
    """Every reference image of every active generator, in a stable order (generator slug, then id)."""
    return list(
        ReferenceImage.objects.filter(generator__is_active=True)
        .select_related("generator")
        .order_by("generator__slug", "id")
    )


def head_version_list() -> QuerySet[HeadVersion]:
    return HeadVersion.objects.select_related("created_by").order_by("-version")


def head_version_active() -> HeadVersion | None:
    """The head that makes verdicts now, or None before the first activation."""
    return HeadVersion.objects.filter(status=HeadVersion.Status.ACTIVE).first()


def head_version_candidate() -> HeadVersion | None:
    """The newest candidate made after the active head (what an admin would compare and activate next)."""
    candidates = HeadVersion.objects.filter(status=HeadVersion.Status.CANDIDATE).order_by("-version")
    active = head_version_active()
    if active is not None:
        candidates = candidates.filter(version__gt=active.version)
    return candidates.first()


@dataclass(frozen=True)
class BlockSweep:
    """A head version's per-block figures, measured when it was trained (`metrics["per_block"]`).

    `state` is "measured" (`rows`: block, accuracy, macro_f1, auroc or None, head_block), "skipped"
    (`reason` says why), or "not_recorded" for a head trained before the sweep existed."""

    state: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    C: float | None = None

    @property
    def has_auroc(self) -> bool:
        return any(row.get("auroc") is not None for row in self.rows)

    def values(self, key: str) -> list[tuple[int, float | None]]:
        """(block, value) pairs of one figure, for a chart."""
        return [(int(row["block"]), row.get(key)) for row in self.rows]


def head_version_block_sweep(*, head_version: HeadVersion) -> BlockSweep:
    metrics = head_version.metrics or {}
    if "per_block" not in metrics:
        return BlockSweep(state="not_recorded")
    if not metrics["per_block"]:
        return BlockSweep(state="skipped", reason=str(metrics.get("per_block_skipped") or "no figures"))
    rows = sorted(metrics["per_block"], key=lambda row: int(row["block"]))
    return BlockSweep(state="measured", rows=rows, C=(metrics.get("per_block_protocol") or {}).get("C"))


def training_job_list() -> QuerySet[TrainingJob]:
    return TrainingJob.objects.select_related("requested_by", "head_version")


def training_job_current() -> TrainingJob | None:
    """The queued or running training job, if any (there is at most one without a cancel pending)."""
    return training_job_list().filter(status__in=TrainingJob.RUNNING_STATES).order_by("created_at").first()


def user_may_reattribute(*, user: AbstractBaseUser | AnonymousUser) -> bool:
    """Team admins re-run their team's submissions; registry admins who belong to a team may too."""
    return user_is_team_admin(user=user) or (
        user_is_registry_admin(user=user) and team_for_user(user=user) is not None
    )


@dataclass(frozen=True)
class VerdictChange:
    """A submission whose latest verdict differs from the one before it (another head version)."""

    submission: Submission
    previous: Verdict
    current: Verdict

    @property
    def decision_changed(self) -> bool:
        return self.previous.decision != self.current.decision

    @property
    def label_changed(self) -> bool:
        return self.previous.label != self.current.label


def verdict_changes(
    *, team: Team, case: Case | None = None, since: datetime | None = None, limit: int = 500
) -> list[VerdictChange]:
    """The team's submissions (of `case`, or uploaded since `since`) whose newest verdict changed the
    label or the decision of the verdict before it; newest re-attribution first."""
    submissions = (
        Submission.objects.filter(team=team)
        .annotate(verdict_count=Count("verdicts"))
        .filter(verdict_count__gte=2)
        .prefetch_related(
            Prefetch(
                "verdicts",
                queryset=Verdict.objects.select_related("head_version").order_by("-created_at", "-id"),
            )
        )
    )
    if case is not None:
        submissions = submissions.filter(case=case)
    if since is not None:
        submissions = submissions.filter(created_at__gte=since)
    changes = []
    for submission in submissions:
        current, previous = list(submission.verdicts.all())[:2]
        if (current.label, current.decision) != (previous.label, previous.decision):
            changes.append(VerdictChange(submission=submission, previous=previous, current=current))
    changes.sort(key=lambda change: change.current.created_at, reverse=True)
    return changes[:limit]
