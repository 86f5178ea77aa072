"""Reads of submissions and verdicts, always within one team.

A duplicate upload (`duplicate_of` set) has no analysis of its own: its "effective" submission
is the earlier one, whose status, error and verdicts it shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.db import models
from django.db.models import Count, F, Prefetch, Q, QuerySet
from django.urls import reverse

from attribution.provenance import Agreement, Claim, Provenance, provenance_report, reconcile
from webapp.cases.models import Case
from webapp.registry.models import Generator, ReferenceImage
from webapp.registry.selectors import generator_aliases, head_version_active
from webapp.submissions.models import Confirmation, Submission, Verdict
from webapp.teams.models import Team

Status = Submission.Status
Decision = Verdict.Decision
MAX_ID = 2**63 - 1  # the largest primary key a database holds: a bigger id in a URL names nothing


def _annotated(submissions: QuerySet[Submission]) -> QuerySet[Submission]:
    """`current_status` and `current_error` (those of the earlier upload, for a duplicate); the latest
    verdict's id, decision and label are the row's own `verdict_id`, `verdict_decision`, `verdict_label`."""
    # The model declares these two as attributes (not columns) for the rows the selectors hand out.
    return submissions.select_related("case", "submitted_by", "duplicate_of").annotate(  # type: ignore[no-redef]
        current_status=models.Case(
            models.When(duplicate_of__isnull=False, then=F("duplicate_of__status")), default=F("status")
        ),
        current_error=models.Case(
            models.When(duplicate_of__isnull=False, then=F("duplicate_of__error")), default=F("error")
        ),
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
    provenance: str = "",
    confirmation: str = "",
    q: str = "",
    order: str = "",
) -> QuerySet[Submission]:
    """The team's submissions, newest first (or in `order`, a key of SUBMISSION_ORDERS), annotated with
    `current_status`, `current_error`,
    `verdict_id`, `verdict_decision` and `verdict_label` (those of the latest verdict)."""
    submissions = _annotated(Submission.objects.filter(team=team))
    if case_id is not None:
        submissions = submissions.filter(case_id=case_id)
    if decision:
        submissions = submissions.filter(verdict_decision=decision)
    if unknown_only:
        submissions = submissions.filter(verdict_decision=Decision.UNKNOWN_GENERATOR)
    if label:
        # An unrecognised image names no generator: its stored label is only the closest known class.
        submissions = submissions.filter(verdict_label=label).exclude(
            verdict_decision=Decision.UNKNOWN_GENERATOR
        )
    if status:
        submissions = submissions.filter(current_status=status)  # type: ignore[misc]  # an annotation
    if date_from is not None:
        submissions = submissions.filter(created_at__date__gte=date_from)
    if date_to is not None:
        submissions = submissions.filter(created_at__date__lte=date_to)
    if submitter:
        submissions = submissions.filter(submitted_by__username=submitter)
    if provenance:
        submissions = submissions.filter(PROVENANCE_FILTERS[provenance])
    if confirmation:
        submissions = submissions.filter(CONFIRMATION_FILTERS[confirmation])
    if q:
        term = q.strip()
        submissions = submissions.filter(
            Q(original_name__icontains=term) | Q(sha256__startswith=term.lower())
        )
    return submissions.order_by(*SUBMISSION_ORDERS.get(order, SUBMISSION_ORDERS[""]))


# The history's sortable columns: a name (a leading "-" for descending) -> the ORDER BY, ties by upload.
SUBMISSION_ORDERS: dict[str, tuple[str, ...]] = {
    "": ("-created_at", "-id"),
    "uploaded": ("created_at", "id"),
    "-uploaded": ("-created_at", "-id"),
    "name": ("original_name", "-created_at", "-id"),
    "-name": ("-original_name", "-created_at", "-id"),
    "decision": ("verdict_decision", "-created_at", "-id"),
    "-decision": ("-verdict_decision", "-created_at", "-id"),
    "score": ("verdict_score", "-created_at", "-id"),
    "-score": ("-verdict_score", "-created_at", "-id"),
    "submitter": ("submitted_by__username", "-created_at", "-id"),
    "-submitter": ("-submitted_by__username", "-created_at", "-id"),
}


def verdicts_attach(submissions: Iterable[Submission], *, names: dict[str, str] | None = None) -> list[Submission]:
    """Set `current_verdict` (the latest verdict, or None), `reading` (its `VerdictReading`, or None),
    `summary` (that verdict in words, or "") and `current_confirmation` (the analyst's `Confirmation`, or
    None) on annotated submissions, in two queries."""
    rows = list(submissions)
    by_id = Verdict.objects.select_related("head_version").in_bulk(
        [s.verdict_id for s in rows if s.verdict_id]
    )
    names = generator_names() if names is None and by_id else (names or {})
    confirmations = confirmations_by_submission(submission_ids=[s.pk for s in rows])
    for submission in rows:
        verdict = submission.current_verdict = by_id.get(submission.verdict_id)
        submission.reading = verdict_reading(verdict=verdict, names=names) if verdict else None
        submission.summary = submission.reading.sentence if submission.reading else ""
        submission.current_confirmation = confirmations.get(submission.pk)
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


# The confidence band of a verdict, from two distances (documented in docs/architecture.md, "The verdict in
# words"): how far the open-set score lies from the head's threshold, and, for a real or known-generator
# verdict, how far the top class's probability lies above the runner-up's.
#   high: distance >= 0.15 and (unknown, or margin >= 0.50)
#   low:  distance <  0.05 or (not unknown and margin < 0.15)
#   medium: everything between.
BAND_HIGH_DISTANCE = 0.15
BAND_HIGH_MARGIN = 0.50
BAND_LOW_DISTANCE = 0.05
BAND_LOW_MARGIN = 0.15
UNRECOGNISED_WORDS = "Unrecognised source: matches neither real photographs nor a registered generator"
# The decisions as the pages name them: "unknown generator" read as "synthetic", which it need not be.
DECISION_NAMES: dict[str, str] = {
    Decision.REAL: "Real photograph",
    Decision.KNOWN_GENERATOR: "Known generator",
    Decision.UNKNOWN_GENERATOR: "Unrecognised source",
}


def score_digits(score: float, threshold: float) -> int:
    """The fewest decimals (3 at least, 6 at most) at which the score and the threshold print differently,
    so that a page never says 0.43 is under 0.43."""
    for digits in range(3, 7):
        if f"{score:.{digits}f}" != f"{threshold:.{digits}f}":
            return digits
    return 6


def confidence_band(*, decision: str, distance: float, margin: float | None) -> str:
    """"high", "medium" or "low" (the edges are the BAND_ constants above)."""
    unknown = decision == Decision.UNKNOWN_GENERATOR
    if distance < BAND_LOW_DISTANCE or (not unknown and margin is not None and margin < BAND_LOW_MARGIN):
        return "low"
    if distance >= BAND_HIGH_DISTANCE and (unknown or margin is None or margin >= BAND_HIGH_MARGIN):
        return "high"
    return "medium"


@dataclass(frozen=True)
class VerdictReading:
    """A verdict as the analyst reads it: the decision in words, the confidence band, the runner-up, and
    the score and threshold printed with enough digits to tell them apart. An unrecognised image has no
    generator `label`; its most likely known class is `closest_known` (for the others it is the label)."""

    decision: str
    headline: str
    band: str
    label: str
    label_name: str
    closest_known: str
    closest_known_name: str
    top_probability: float
    runner_up: ClassProbability | None
    margin: float | None
    distance: float
    score_text: str
    threshold_text: str
    sentence: str

    @property
    def unrecognised(self) -> bool:
        return self.decision == Decision.UNKNOWN_GENERATOR

    @property
    def decision_name(self) -> str:
        return DECISION_NAMES.get(self.decision, self.decision)

    @property
    def relation(self) -> str:
        return "under" if self.unrecognised else "over"


def verdict_label(*, verdict: Verdict) -> str:
    """The generator (or "real") a verdict names: blank for an unrecognised image."""
    return "" if verdict.decision == Decision.UNKNOWN_GENERATOR else verdict.label


def verdict_reading(*, verdict: Verdict, names: dict[str, str] | None = None) -> VerdictReading:
    names = generator_names() if names is None else names
    ranked = verdict_probabilities(verdict=verdict, names=names)
    top = float(verdict.probabilities.get(verdict.label, verdict.score))
    others = [c for c in ranked if c.label != verdict.label]
    runner_up = others[0] if others else None
    margin = top - runner_up.probability if runner_up is not None else None
    distance = abs(verdict.score - verdict.threshold)
    band = confidence_band(decision=verdict.decision, distance=distance, margin=margin)
    digits = score_digits(verdict.score, verdict.threshold)
    score_text, threshold_text = f"{verdict.score:.{digits}f}", f"{verdict.threshold:.{digits}f}"
    closest_name = names.get(verdict.label, verdict.label)
    if verdict.decision == Decision.UNKNOWN_GENERATOR:
        headline = UNRECOGNISED_WORDS
        sentence = (
            f"{headline} — {band} confidence (score {score_text} under the threshold {threshold_text}; "
            f"closest known class: {closest_name}, {top:.0%})"
        )
    else:
        headline = "Real photograph" if verdict.decision == Decision.REAL else f"Generated by {closest_name}"
        runner = f"; runner-up: {runner_up.name}, {runner_up.probability:.0%}" if runner_up is not None else ""
        sentence = f"{headline} — {band} confidence ({top:.0%}{runner})"
    label = verdict_label(verdict=verdict)
    return VerdictReading(
        decision=verdict.decision,
        headline=headline,
        band=band,
        label=label,
        label_name=names.get(label, label) if label else "",
        closest_known=verdict.label,
        closest_known_name=closest_name,
        top_probability=top,
        runner_up=runner_up,
        margin=margin,
        distance=distance,
        score_text=score_text,
        threshold_text=threshold_text,
        sentence=sentence,
    )


def verdict_sentence(*, verdict: Verdict, names: dict[str, str] | None = None) -> str:
    """The decision in words, as the verdict page, the history, the API, the exports and the reports say it:
    never "synthetic" for an image that matches no class the head knows."""
    return verdict_reading(verdict=verdict, names=names).sentence


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
                "summary": s.summary,
            }
        )
    return progress


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


# --- provenance: what the file says about its origin, beside the pixels' verdict ---------------------------

C2PA_VALIDATIONS = ("valid", "untrusted", "invalid_signature", "hash_mismatch", "malformed")
# The history's provenance filter (stored fields, each an index lookup: see Submission.Meta.indexes).
PROVENANCE_FILTERS: dict[str, Q] = {
    "conflicts": Q(provenance_agreement="conflicts"),
    "agrees": Q(provenance_agreement="agrees"),
    # A C2PA manifest whose signature checks, whether or not its signer chains to a trust anchor.
    "signed": Q(provenance_c2pa__in=["valid", "untrusted"]),
    "has_c2pa": Q(provenance_c2pa__in=C2PA_VALIDATIONS),
}
PROVENANCE_FILTER_CHOICES = [
    ("conflicts", "Provenance conflicts with the verdict"),
    ("agrees", "Provenance agrees with the verdict"),
    ("signed", "Signed C2PA manifest"),
    ("has_c2pa", "Has a C2PA manifest"),
]


def _stored_claims(stored: dict[str, Any]) -> tuple[Claim, ...]:
    """The claims as `read_provenance` gave them, back from the submission's JSON."""
    return tuple(
        Claim(
            source=claim["source"],
            says=claim["says"],
            generator=claim.get("generator"),
            strength=claim["strength"],
            detail=claim.get("detail") or {},
        )
        for claim in stored.get("claims") or []
    )


def provenance_agreement(
    *, provenance: dict[str, Any], decision: str, label: str, aliases: dict[str, list[str]]
) -> Agreement:
    """How a submission's stored provenance stands to a verdict (`decision` "" : no verdict yet)."""
    if not decision:
        return Agreement("none", "There is no verdict yet to compare the claims with.")
    return reconcile(_stored_claims(provenance), decision=decision, label=label or None, aliases=aliases)  # type: ignore[arg-type]


def submission_provenance(
    *, submission: Submission, aliases: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """The API's `provenance` object: the file's claims, its C2PA manifest (or None), and whether they agree
    with the latest verdict, with the reason (`attribution.provenance.provenance_report`), the generators'
    registered aliases naming the generators."""
    stored = submission.provenance or {}
    report = provenance_report(
        Provenance(claims=_stored_claims(stored)),
        decision=submission.verdict_decision or None,  # type: ignore[arg-type]
        label=submission.verdict_label or None,
        aliases=generator_aliases() if aliases is None else aliases,
    )
    report["c2pa"] = stored.get("c2pa")
    return report


@dataclass(frozen=True)
class ReattributionProgress:
    """How far the active head has got through the open cases' submissions (duplicates are left out: their
    earlier upload carries the verdict)."""

    head_version: int | None
    total: int
    judged: int
    waiting: int
    failed: int

    @property
    def percent(self) -> int:
        return round(100 * (self.judged + self.failed) / self.total) if self.total else 100


def open_cases_reattribution_progress() -> ReattributionProgress:
    active = head_version_active()
    submissions = Submission.objects.filter(case__status=Case.Status.OPEN, duplicate_of__isnull=True)
    counts = submissions.aggregate(
        total=Count("pk"),
        waiting=Count("pk", filter=Q(status__in=[Status.QUEUED, Status.PROCESSING])),
        failed=Count("pk", filter=Q(status=Status.FAILED)),
        judged=Count("pk", filter=Q(verdict_head_version=active) & Q(status=Status.DONE)) if active else Count(
            "pk", filter=Q(pk__in=[])
        ),
    )
    return ReattributionProgress(head_version=active.version if active else None, **counts)


# --- the analyst's confirmation of a verdict ----------------------------------------------------------------

# The history's confirmation filter: the indexed `Submission.confirmation_status` (see Submission.Meta.indexes).
CONFIRMATION_FILTERS: dict[str, Q] = {
    "unreviewed": Q(confirmation_status=""),
    "confirmed": Q(confirmation_status=Confirmation.Status.CONFIRMED),
    "disputed": Q(confirmation_status=Confirmation.Status.DISPUTED),
}
CONFIRMATION_FILTER_CHOICES = [
    ("unreviewed", "Not reviewed"),
    ("confirmed", "Confirmed by an analyst"),
    ("disputed", "Disputed by an analyst"),
]


def confirmations_by_submission(*, submission_ids: Sequence[int]) -> dict[int, Confirmation]:
    """Submission id -> its confirmation, with what the pages and the API show of it, in one query."""
    if not submission_ids:
        return {}
    return {
        confirmation.submission_id: confirmation
        for confirmation in Confirmation.objects.filter(submission_id__in=list(submission_ids)).select_related(
            "generator", "confirmed_by", "verdict__head_version"
        )
    }


def confirmation_label_choices() -> list[tuple[str, str]]:
    """The registered classes an analyst can name, as (slug, name): "real" first, then by name."""
    generators = list(Generator.objects.order_by("name").values_list("slug", "name"))
    real = [(slug, name) for slug, name in generators if slug == Generator.REAL_SLUG] or [
        (Generator.REAL_SLUG, "Real photograph")
    ]
    return real + [(slug, name) for slug, name in generators if slug != Generator.REAL_SLUG]


@dataclass(frozen=True)
class ConfirmationReading:
    """A confirmation as the pages, the exports and the API say it. `label` is a registered class's slug,
    "real", another generator in the analyst's words, or "" (confirmed unrecognised: an unregistered source;
    disputed: the analyst does not say what the image is). `stale`: given on an older verdict than the
    submission's latest."""

    status: str
    label: str
    label_name: str
    generator: str | None
    note: str
    confirmed_by: str
    confirmed_at: datetime
    verdict_head_version: int | None
    stale: bool

    @property
    def status_name(self) -> str:
        return Confirmation.Status(self.status).label

    @property
    def label_words(self) -> str:
        """What the analyst says the image is, in words."""
        if self.label:
            registered = self.generator is not None or self.label == Generator.REAL_SLUG
            return self.label_name if registered else f"{self.label} (unregistered)"
        return "an unregistered source" if self.status == Confirmation.Status.CONFIRMED else "not known"

    def as_dict(self) -> dict[str, Any]:
        """The API's `confirmation` object."""
        return {
            "status": self.status,
            "label": self.label,
            "generator": self.generator,
            "note": self.note,
            "confirmed_by": self.confirmed_by,
            "confirmed_at": self.confirmed_at,
            "verdict_head_version": self.verdict_head_version,
        }


def confirmation_reading(
    *, confirmation: Confirmation, latest_verdict_id: int | None, names: dict[str, str] | None = None
) -> ConfirmationReading:
    """`confirmation` (read with `confirmations_by_submission`) in words; `latest_verdict_id` is the
    submission's latest verdict (its row's `verdict_id`), to tell whether the analyst judged an older one."""
    names = generator_names() if names is None else names
    generator = confirmation.generator
    label = confirmation.label
    if generator is not None:
        label_name = generator.name
    elif label == Generator.REAL_SLUG:
        label_name = names.get(label, DECISION_NAMES[Decision.REAL])
    else:
        label_name = names.get(label, label)
    verdict = confirmation.verdict
    return ConfirmationReading(
        status=confirmation.status,
        label=label,
        label_name=label_name,
        generator=generator.slug if generator is not None else None,
        note=confirmation.note,
        confirmed_by=confirmation.confirmed_by.get_username() if confirmation.confirmed_by else "",
        confirmed_at=confirmation.updated_at,
        verdict_head_version=verdict.head_version.version if verdict is not None else None,
        stale=confirmation.verdict_id != latest_verdict_id,
    )


def submission_confirmation(
    *, submission: Submission, names: dict[str, str] | None = None
) -> ConfirmationReading | None:
    """The confirmation `verdicts_attach` set on the submission, in words; None when nobody has reviewed it."""
    confirmation = getattr(submission, "current_confirmation", None)
    if confirmation is None:
        return None
    return confirmation_reading(confirmation=confirmation, latest_verdict_id=submission.verdict_id, names=names)
