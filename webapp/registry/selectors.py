"""Reads of the registry: generators, reference images, head versions and training jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Q, QuerySet

from webapp.registry.charts import block_chart
from webapp.registry.models import Generator, HeadVersion, ReferenceImage, TrainingJob
from webapp.teams.selectors import team_for_user, user_is_registry_admin


def generator_list(*, active_only: bool = False) -> QuerySet[Generator]:
    """Generators with `reference_count`, "real" first, then by name."""
    generators = Generator.objects.annotate(reference_count=Count("references")).order_by("-builtin", "name")
    return generators.filter(is_active=True) if active_only else generators


def generator_aliases() -> dict[str, list[str]]:
    """Generator slug -> the names a file's provenance may call it by (its name and its aliases), for
    `attribution.provenance.reconcile`. "real" names no generator and is left out."""
    rows = Generator.objects.exclude(slug=Generator.REAL_SLUG).values_list("slug", "name", "aliases")
    return {slug: [name, *(alias for alias in aliases or [] if isinstance(alias, str))] for slug, name, aliases in rows}


def reference_image_list(*, generator: Generator, user: AbstractBaseUser | AnonymousUser) -> QuerySet[ReferenceImage]:
    """The generator's references that `user` may see: all of them for a registry admin; for a team member,
    those uploaded to the registry and those that came from their own team's submissions (another team's
    images stay that team's)."""
    return references_visible(generator.references.all(), user=user).order_by("-created_at", "-id")


def references_visible(
    references: QuerySet[ReferenceImage], *, user: AbstractBaseUser | AnonymousUser
) -> QuerySet[ReferenceImage]:
    if user_is_registry_admin(user=user):
        return references
    return references.filter(Q(source_team__isnull=True) | Q(source_team=team_for_user(user=user)))


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


# --- tables of the head version pages -----------------------------------------------------------------

SHOWN_METRICS = (
    ("accuracy", "Accuracy (cross-validated)"),
    ("macro_f1", "Macro F1"),
    ("auroc", "AUROC (held-out generators)"),
    ("oscr", "OSCR (held-out generators)"),
    ("unknown_rejection_at_threshold", "Unknown rejected at threshold"),
)


def head_version_metric_rows(*, active: HeadVersion | None, candidate: HeadVersion | None) -> list[dict[str, Any]]:
    """The shown metrics of the active head and a candidate side by side, with the difference."""
    rows = []
    for key, label in SHOWN_METRICS:
        a = active.metrics.get(key) if active else None
        c = candidate.metrics.get(key) if candidate else None
        delta = c - a if isinstance(a, float | int) and isinstance(c, float | int) else None
        rows.append({"key": key, "label": label, "active": a, "candidate": c, "delta": delta})
    return rows


def head_version_confusion_rows(*, head_version: HeadVersion) -> tuple[list[str], list[dict[str, Any]]]:
    """Rows of the head's cross-validated confusion matrix with each cell's share of its row, for shading."""
    metrics = head_version.metrics
    confusion = metrics.get("confusion") or {}
    labels, matrix = confusion.get("labels") or [], confusion.get("matrix") or []
    rows = []
    for label, counts in zip(labels, matrix, strict=False):
        total = sum(counts) or 1
        cells = [{"count": n, "share": n / total} for n in counts]
        rows.append({"label": label, "cells": cells, "recall": (metrics.get("per_class_recall") or {}).get(label)})
    return labels, rows


def head_version_block_comparison(
    *, active: HeadVersion | None, candidate: HeadVersion | None
) -> dict[str, Any] | None:
    """Accuracy per block of the active head and the candidate, side by side; None without a candidate.
    A head trained before the per-block sweep existed is named in `unmeasured`, and there is no chart."""
    if active is None or candidate is None:
        return None
    active_sweep = head_version_block_sweep(head_version=active)
    candidate_sweep = head_version_block_sweep(head_version=candidate)
    unmeasured = [
        head for head, sweep in ((active, active_sweep), (candidate, candidate_sweep)) if sweep.state != "measured"
    ]
    if unmeasured:
        return {"chart": None, "rows": [], "unmeasured": unmeasured}
    left, right = dict(active_sweep.values("accuracy")), dict(candidate_sweep.values("accuracy"))
    rows = []
    for block in sorted(left.keys() | right.keys()):
        a, c = left.get(block), right.get(block)
        delta = c - a if a is not None and c is not None else None
        marked = block in active.blocks or block in candidate.blocks
        rows.append({"block": block, "active": a, "candidate": c, "delta": delta, "marked": marked})
    chart = block_chart(
        [
            (f"Active v{active.version}", active_sweep.values("accuracy")),
            (f"Candidate v{candidate.version}", candidate_sweep.values("accuracy")),
        ],
        marked_blocks=set(active.blocks) | set(candidate.blocks),
    )
    return {"chart": chart, "rows": rows, "unmeasured": []}


def head_version_manifest_counts(*, head_version: HeadVersion) -> list[tuple[str, int]]:
    """How many reference images of each generator the head was trained on."""
    counts: dict[str, int] = {}
    for item in head_version.manifest:
        counts[item["generator"]] = counts.get(item["generator"], 0) + 1
    return sorted(counts.items())


# The metrics an activation compares (higher is better for each), with the names the review uses.
REVIEWED_METRICS = ("accuracy", "macro_f1", "auroc", "oscr", "unknown_rejection_at_threshold")


@dataclass(frozen=True)
class ActivationReview:
    """What activating `head` would change: its metrics beside the active head's, and those it is worse on
    (a metric the active head has and `head` lacks counts as worse)."""

    head: HeadVersion
    active: HeadVersion | None
    rows: list[dict[str, Any]]
    worse: list[str]

    @property
    def rollback(self) -> bool:
        return self.active is not None and self.head.version < self.active.version

    @property
    def already_active(self) -> bool:
        return self.active is not None and self.active.pk == self.head.pk


def head_version_activation_review(*, head_version: HeadVersion) -> ActivationReview:
    active = head_version_active()
    rows = head_version_metric_rows(active=active, candidate=head_version)
    worse = []
    if active is not None and active.pk != head_version.pk:
        for row in rows:
            if row["key"] not in REVIEWED_METRICS or row["active"] is None:
                continue
            if row["candidate"] is None or (row["delta"] is not None and row["delta"] < 0):
                worse.append(row["label"])
    return ActivationReview(head=head_version, active=active, rows=rows, worse=worse)


def head_version_method(*, head_version: HeadVersion) -> dict[str, Any]:
    """How the head was chosen and scores, from what its training recorded: the blocks (and how they are
    joined, and whether training chose them), the open-set score, C (or k for kNN) and the criterion that
    chose it. Heads trained before these were recorded get the defaults of their time (MSP, C by accuracy)."""
    metrics = head_version.metrics or {}
    hyper = metrics.get("hyperparameters") or {}
    return {
        "blocks": list(head_version.blocks),
        "feature_join": metrics.get("feature_join") or "concat",
        "blocks_chosen_by_training": bool(metrics.get("block_choice")),
        "score_method": metrics.get("score_method") or hyper.get("score_method") or "msp",
        "score_comparison": metrics.get("score_comparison") or {},
        "C": hyper.get("C"),
        "k": hyper.get("k"),
        "select_by": hyper.get("select_by") or ("accuracy" if hyper.get("head", "linear") == "linear" else None),
        "criterion": hyper.get("criterion_used") or hyper.get("selection_metric"),
        "class_weight": hyper.get("class_weight"),
        "robust_training": bool(metrics.get("robust_training") or hyper.get("robust_training")),
    }
