"""Reads of submissions and verdicts, always within one team.

A duplicate upload (`duplicate_of` set) has no analysis of its own: its "effective" submission
is the earlier one, whose status, error and verdicts it shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.db import models
from django.db.models import F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse

from webapp.registry.models import Generator, ReferenceImage
from webapp.submissions.models import Submission, Verdict
from webapp.teams.models import Team

Status = Submission.Status
Decision = Verdict.Decision
MAX_ID = 2**63 - 1  # the largest primary key a database holds: a bigger id in a URL names nothing


def _latest_verdict(field: str) -> Subquery:
    latest = Verdict.objects.filter(submission_id=OuterRef("effective_id")).order_by("-created_at", "-id")
    return Subquery(latest.values(field)[:1])


def _annotated(submissions: QuerySet[Submission]) -> QuerySet[Submission]:
    return (
        submissions.select_related("case", "submitted_by", "duplicate_of")
        .annotate(effective_id=Coalesce("duplicate_of_id", "id"))
        .annotate(
            current_status=models.Case(
                models.When(duplicate_of__isnull=False, then=F("duplicate_of__status")), default=F("status")
            ),
            current_error=models.Case(
                models.When(duplicate_of__isnull=False, then=F("duplicate_of__error")), default=F("error")
            ),
            verdict_id=_latest_verdict("id"),
            verdict_decision=_latest_verdict("decision"),
            verdict_label=_latest_verdict("label"),
        )
    )


def submission_list(
    *,
    team: Team,
    case_id: int | None = None,
    decision: str = "",
    label: str = "",
    status: str = "",
    date_from: date | None = None,
    date_to: date | None = None,
    submitter: str = "",
    unknown_only: bool = False,
    q: str = "",
) -> QuerySet[Submission]:
    """The team's submissions, newest first, annotated with `current_status`, `current_error`,
    `verdict_id`, `verdict_decision` and `verdict_label` (those of the latest verdict)."""
    submissions = _annotated(Submission.objects.filter(team=team))
    if case_id is not None:
        submissions = submissions.filter(case_id=case_id)
    if decision:
        submissions = submissions.filter(verdict_decision=decision)
    if unknown_only:
        submissions = submissions.filter(verdict_decision=Decision.UNKNOWN_GENERATOR)
    if label:
        submissions = submissions.filter(verdict_label=label)
    if status:
        submissions = submissions.filter(current_status=status)
    if date_from is not None:
        submissions = submissions.filter(created_at__date__gte=date_from)
    if date_to is not None:
        submissions = submissions.filter(created_at__date__lte=date_to)
    if submitter:
        submissions = submissions.filter(submitted_by__username=submitter)
    if q:
        term = q.strip()
        submissions = submissions.filter(
            Q(original_name__icontains=term) | Q(sha256__startswith=term.lower())
        )
    return submissions.order_by("-created_at", "-id")


def verdicts_attach(submissions: Iterable[Submission]) -> list[Submission]:
    """Set `current_verdict` (the latest verdict, or None) on annotated submissions, in one query."""
    rows = list(submissions)
    by_id = Verdict.objects.select_related("head_version").in_bulk(
        [s.verdict_id for s in rows if s.verdict_id]
    )
    for submission in rows:
        submission.current_verdict = by_id.get(submission.verdict_id)
    return rows


def submission_get(*, team: Team, submission_id: int) -> Submission | None:
    """One of the team's submissions, annotated as in `submission_list`, with `current_verdict`."""
    if not 0 < submission_id <= MAX_ID:
        return None
    submission = _annotated(Submission.objects.filter(team=team, pk=submission_id)).first()
    return verdicts_attach([submission])[0] if submission is not None else None


def submission_effective(*, submission: Submission) -> Submission:
    return submission.duplicate_of or submission


def verdict_list(*, submission: Submission) -> list[Verdict]:
    """Every verdict on the (effective) submission, newest first: the latest, then older heads'."""
    effective = submission_effective(submission=submission)
    return list(
        Verdict.objects.filter(submission=effective)
        .select_related("head_version")
        .order_by("-created_at", "-id")
    )


def generator_names() -> dict[str, str]:
    """Class label (generator slug) -> generator name, for saying verdicts in words."""
    return dict(Generator.objects.values_list("slug", "name"))


def verdict_sentence(*, verdict: Verdict, names: dict[str, str] | None = None) -> str:
    """The decision in words, as the verdict page, the exports and the reports say it."""
    names = generator_names() if names is None else names
    if verdict.decision == Decision.UNKNOWN_GENERATOR:
        return (
            f"Synthetic image from an unknown generator: its score {verdict.score:.2f} "
            f"is under the threshold {verdict.threshold:.2f}"
        )
    if verdict.decision == Decision.REAL:
        return "Real photograph"
    confidence = float(verdict.probabilities.get(verdict.label, verdict.score))
    return f"Generated by {names.get(verdict.label, verdict.label)}, {confidence:.0%} confidence"


@dataclass(frozen=True)
class ClassProbability:
    label: str
    name: str
    probability: float

    @property
    def percent(self) -> float:
        return round(self.probability * 100, 1)


def verdict_probabilities(*, verdict: Verdict, names: dict[str, str] | None = None) -> list[ClassProbability]:
    """Per-class probabilities, most likely first (the verdict page's bar chart)."""
    names = generator_names() if names is None else names
    return sorted(
        (
            ClassProbability(label=k, name=names.get(k, k), probability=float(p))
            for k, p in verdict.probabilities.items()
        ),
        key=lambda c: -c.probability,
    )


@dataclass(frozen=True)
class Evidence:
    """One of the reference images most similar to the submission (None when since deleted)."""

    sha256: str
    label: str
    generator_name: str
    similarity: float
    reference: ReferenceImage | None


def verdict_evidence(*, verdict: Verdict, names: dict[str, str] | None = None) -> list[Evidence]:
    names = generator_names() if names is None else names
    nearest = verdict.nearest_references or []
    references = {
        (r.generator.slug, r.sha256): r
        for r in ReferenceImage.objects.select_related("generator").filter(
            sha256__in=[n["sha256"] for n in nearest]
        )
    }
    return [
        Evidence(
            sha256=n["sha256"],
            label=n["label"],
            generator_name=names.get(n["label"], n["label"]),
            similarity=float(n["similarity"]),
            reference=references.get((n["label"], n["sha256"])),
        )
        for n in nearest
    ]


FINAL_STATUSES = (Status.DONE, Status.FAILED)


def submission_progress(*, team: Team, submission_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Status rows for the upload page's live progress (ids of other teams are left out)."""
    rows = verdicts_attach(_annotated(Submission.objects.filter(team=team, id__in=list(submission_ids))))
    names = generator_names()
    progress = []
    for s in rows:
        verdict: Verdict | None = s.current_verdict
        progress.append(
            {
                "id": s.pk,
                "status": s.current_status,
                "error": s.current_error,
                "url": reverse("submissions:detail", args=[s.pk]),
                "decision": verdict.decision if verdict else None,
                "summary": verdict_sentence(verdict=verdict, names=names) if verdict else "",
            }
        )
    return progress
