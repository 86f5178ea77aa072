"""Reads of cases, always within one team."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, QuerySet

from webapp.cases.models import Case
from webapp.submissions.models import Submission, Verdict
from webapp.submissions.selectors import (
    MAX_ID,
    generator_names,
    submission_list,
    verdict_sentence,
    verdicts_attach,
)
from webapp.teams.models import Team


def case_list(*, team: Team, status: str = "") -> QuerySet[Case]:
    """The team's cases, newest first, with `submission_count`."""
    cases = (
        Case.objects.filter(team=team)
        .select_related("created_by")
        .annotate(submission_count=Count("submissions"))
    )
    if status:
        cases = cases.filter(status=status)
    return cases.order_by("-created_at", "-id")


def case_get(*, team: Team, case_id: int) -> Case | None:
    if not 0 < case_id <= MAX_ID:
        return None
    return case_list(team=team).filter(pk=case_id).first()


@dataclass(frozen=True)
class CaseSummary:
    """How the case's submissions stand: counts per decision, and those still waiting or failed."""

    real: int = 0
    known_generator: int = 0
    unknown_generator: int = 0
    pending: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.real + self.known_generator + self.unknown_generator + self.pending + self.failed

    def rows(self) -> list[tuple[str, str, int]]:
        """(key, label, count) for the summary chart."""
        return [
            ("real", Verdict.Decision.REAL.label, self.real),
            ("known_generator", Verdict.Decision.KNOWN_GENERATOR.label, self.known_generator),
            ("unknown_generator", Verdict.Decision.UNKNOWN_GENERATOR.label, self.unknown_generator),
            ("pending", "Waiting", self.pending),
            ("failed", "Failed", self.failed),
        ]

    def as_dict(self) -> dict[str, int]:
        return {key: count for key, _, count in self.rows()}


def case_summary(*, case: Case) -> CaseSummary:
    counts = {"real": 0, "known_generator": 0, "unknown_generator": 0, "pending": 0, "failed": 0}
    for status, decision in submission_list(team=case.team, case_id=case.pk).values_list(
        "current_status", "verdict_decision"
    ):
        if status == Submission.Status.FAILED:
            counts["failed"] += 1
        elif status != Submission.Status.DONE or decision is None:
            counts["pending"] += 1
        else:
            counts[decision] += 1
    return CaseSummary(**counts)


def case_export_rows(*, case: Case) -> list[dict[str, Any]]:
    """One plain row per submission of the case, oldest first, with its latest verdict."""
    names = generator_names()
    rows = []
    for s in verdicts_attach(submission_list(team=case.team, case_id=case.pk).order_by("created_at", "id")):
        verdict: Verdict | None = s.current_verdict
        rows.append(
            {
                "id": s.pk,
                "file_name": s.original_name,
                "sha256": s.sha256,
                "submitted_by": s.submitted_by.get_username(),
                "uploaded_at": s.created_at.isoformat(),
                "format": s.image_format,
                "width": s.width,
                "height": s.height,
                "size_bytes": s.size_bytes,
                "duplicate_of": s.duplicate_of_id,
                "status": s.current_status,
                "error": s.current_error,
                "verdict": verdict_sentence(verdict=verdict, names=names) if verdict else "",
                "decision": verdict.decision if verdict else "",
                "label": verdict.label if verdict else "",
                "generator": names.get(verdict.label, verdict.label) if verdict else "",
                "score": verdict.score if verdict else None,
                "threshold": verdict.threshold if verdict else None,
                "probabilities": verdict.probabilities if verdict else {},
                "nearest_references": verdict.nearest_references if verdict else [],
                "head_version": verdict.head_version.version if verdict else None,
                "backbone": verdict.backbone if verdict else "",
                "pretrained": verdict.pretrained if verdict else None,
                "verdict_at": verdict.created_at.isoformat() if verdict else "",
            }
        )
    return rows


def case_as_dict(*, case: Case) -> dict[str, Any]:
    return {
        "id": case.pk,
        "title": case.title,
        "reference": case.reference,
        "notes": case.notes,
        "status": case.status,
        "created_by": case.created_by.get_username(),
        "created_at": case.created_at.isoformat(),
    }
