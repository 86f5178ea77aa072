"""What a case report shows, gathered in one read: the case, each submission with its latest
verdict and the reference images behind it, counts per decision and the audit trail.

The verdicts are read and put in words by the submissions and cases selectors, as on the case and
verdict pages. Images go into the report as data: URIs of small JPEG thumbnails read through the
storage API, so the report stands alone (a PDF or an HTML file handed to someone outside).
"""

from __future__ import annotations

import base64
import io
import json
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache, reduce
from operator import or_
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.files.storage import default_storage
from django.utils import timezone

from attribution.images import ImageRejected, open_image
from webapp.audit.models import AuditEvent
from webapp.audit.selectors import audit_events_for
from webapp.cases.models import Case
from webapp.registry.selectors import generator_aliases
from webapp.submissions.models import Submission, Verdict
from webapp.submissions.selectors import (
    DECISION_NAMES,
    ClassProbability,
    ConfirmationReading,
    Evidence,
    VerdictReading,
    generator_names,
    submission_confirmation,
    submission_list,
    submission_provenance,
    verdict_evidence,
    verdict_probabilities,
    verdict_reading,
    verdicts_attach,
)

SUBMISSION_THUMBNAIL_PX = 320
REFERENCE_THUMBNAIL_PX = 120
PROBABILITY_ROWS = 8  # the rest of the classes are summed up in one line
AUDIT_DETAIL_CHARS = 160


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
            ("unknown_generator", DECISION_NAMES[Verdict.Decision.UNKNOWN_GENERATOR], self.unknown_generator),
            ("pending", "Waiting", self.pending),
            ("failed", "Failed", self.failed),
        ]

    def as_dict(self) -> dict[str, int]:
        return {key: count for key, _, count in self.rows()}


def case_summary(*, case: Case) -> CaseSummary:
    counts = {"real": 0, "known_generator": 0, "unknown_generator": 0, "pending": 0, "failed": 0}
    for status, decision in submission_list(team=case.team, case_id=case.pk).values_list(  # type: ignore[misc]
        "current_status", "verdict_decision"  # current_status is an annotation of `submission_list`
    ):
        if status == Submission.Status.FAILED:
            counts["failed"] += 1
        elif status != Submission.Status.DONE or not decision:
            counts["pending"] += 1
        else:
            counts[decision] += 1
    return CaseSummary(**counts)


def case_export_rows(*, case: Case) -> list[dict[str, Any]]:
    """One plain row per submission of the case, oldest first, with its latest verdict."""
    return submission_export_rows(
        submissions=submission_list(team=case.team, case_id=case.pk).order_by("created_at", "id")
    )


def submission_export_rows(*, submissions: Iterable[Submission]) -> list[dict[str, Any]]:
    """Annotated submissions (`submission_list`) as export rows, in the order given. An unrecognised image
    has no label or generator: its most likely known class is `closest_known`."""
    names = generator_names()
    aliases = generator_aliases()
    rows = []
    for s in verdicts_attach(submissions, names=names):
        verdict: Verdict | None = s.current_verdict
        reading = s.reading
        provenance = submission_provenance(submission=s, aliases=aliases)
        confirmation = submission_confirmation(submission=s, names=names)
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
                "verdict": s.summary,
                "decision": verdict.decision if verdict else "",
                "confidence": reading.band if reading else "",
                "label": reading.label if reading else "",
                "generator": reading.label_name if reading else "",
                "closest_known": reading.closest_known if reading else "",
                "runner_up": reading.runner_up.label if reading and reading.runner_up else "",
                "score": verdict.score if verdict else None,
                "threshold": verdict.threshold if verdict else None,
                "probabilities": verdict.probabilities if verdict else {},
                "nearest_references": verdict.nearest_references if verdict else [],
                "head_version": verdict.head_version.version if verdict else None,
                "backbone": verdict.backbone if verdict else "",
                "pretrained": verdict.pretrained if verdict else None,
                "verdict_at": verdict.created_at.isoformat() if verdict else "",
                # What the file says about its origin, and how that stands to the verdict.
                "provenance_agreement": provenance["agreement"],
                "provenance_reason": provenance["reason"],
                "c2pa_validation": provenance["c2pa"]["validation"] if provenance["c2pa"] else "",
                "provenance_claims": provenance["claims"],
                # What an analyst of the team said of the verdict (empty: nobody has reviewed it).
                "confirmation": confirmation.status if confirmation else "",
                "confirmation_label": confirmation.label if confirmation else "",
                "confirmation_generator": (confirmation.generator or "") if confirmation else "",
                "confirmed_by": confirmation.confirmed_by if confirmation else "",
                "confirmed_at": confirmation.confirmed_at.isoformat() if confirmation else "",
                "confirmation_note": confirmation.note if confirmation else "",
                "confirmation_head_version": confirmation.verdict_head_version if confirmation else None,
            }
        )
    return rows


@dataclass(frozen=True)
class Bar:
    """One bar of the counts chart; `percent` is the bar's width."""

    key: str
    label: str
    value: int
    percent: float


@dataclass(frozen=True)
class ReferenceThumbnail:
    evidence: Evidence
    thumbnail: str | None


@dataclass
class SubmissionEntry:
    number: int
    # Annotated by `submission_list`: `current_status`, `current_error`, `current_verdict`.
    submission: Submission
    thumbnail: str | None
    decision_words: str = ""
    reading: VerdictReading | None = None
    probabilities: list[ClassProbability] = field(default_factory=list)
    other_classes: int = 0
    other_probability: float = 0.0
    references: list[ReferenceThumbnail] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)  # `submission_provenance`'s object
    confirmation: ConfirmationReading | None = None  # what an analyst of the team said of the verdict

    @property
    def verdict(self) -> Verdict | None:
        return getattr(self.submission, "current_verdict", None)


@dataclass(frozen=True)
class AuditEntry:
    event: AuditEvent
    target: str
    detail: str


@lru_cache(maxsize=1)
def platform_version() -> str:
    try:
        with open(settings.BASE_DIR / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def image_data_uri(name: str, *, size: int) -> str | None:
    """A JPEG thumbnail of a stored image as a data: URI; None where the file is gone or unreadable."""
    try:
        with default_storage.open(name, "rb") as f:
            image = open_image(f, max_pixels=settings.UPLOAD_MAX_PIXELS)
    except (OSError, ImageRejected):
        return None
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _audit_trail(case: Case, submissions: list[Submission]) -> list[AuditEntry]:
    verdicts = [getattr(s, "current_verdict", None) for s in submissions]
    verdict_ids = [str(v.pk) for v in verdicts if v is not None]
    names = {("submission", str(s.pk)): f"submission #{s.pk} {s.original_name}" for s in submissions}
    names[("case", str(case.pk))] = f"this case (#{case.pk})"
    targets = {"case": [str(case.pk)], "submission": [str(s.pk) for s in submissions], "verdict": verdict_ids}
    events = reduce(or_, (audit_events_for(object_type=t, object_ids=ids) for t, ids in targets.items()))
    entries = []
    for event in events.order_by("created_at", "id"):
        detail = json.dumps(event.detail, sort_keys=True, default=str) if event.detail else ""
        if len(detail) > AUDIT_DETAIL_CHARS:
            detail = detail[: AUDIT_DETAIL_CHARS - 1] + "…"
        target = names.get((event.object_type, event.object_id), f"{event.object_type} #{event.object_id}")
        entries.append(AuditEntry(event=event, target=target, detail=detail))
    return entries


def _decision_counts(case: Case) -> list[Bar]:
    summary = case_summary(case=case)
    total = max(summary.total, 1)
    return [
        Bar(key=key, label=label, value=count, percent=round(100 * count / total, 1))
        for key, label, count in summary.rows()
    ]


def case_report_context(
    *, case: Case, generated_by: AbstractBaseUser | AnonymousUser | None = None
) -> dict[str, Any]:
    """Everything the case report template shows."""
    in_order = submission_list(team=case.team, case_id=case.pk).order_by("created_at", "id")
    submissions = verdicts_attach(in_order)
    names = generator_names()
    aliases = generator_aliases()
    thumbnails: dict[tuple[str, int], str | None] = {}  # a reference often backs several verdicts

    def thumbnail(name: str, size: int = REFERENCE_THUMBNAIL_PX) -> str | None:
        if name and (name, size) not in thumbnails:
            thumbnails[(name, size)] = image_data_uri(name, size=size)
        return thumbnails.get((name, size))

    entries = []
    for number, submission in enumerate(submissions, start=1):
        entry = SubmissionEntry(number, submission, thumbnail(submission.image.name or "", SUBMISSION_THUMBNAIL_PX))
        entry.provenance = submission_provenance(submission=submission, aliases=aliases)
        entry.confirmation = submission_confirmation(submission=submission, names=names)
        if (verdict := entry.verdict) is not None:
            entry.reading = verdict_reading(verdict=verdict, names=names)
            entry.decision_words = entry.reading.sentence
            ranked = verdict_probabilities(verdict=verdict, names=names)
            entry.probabilities = ranked[:PROBABILITY_ROWS]
            entry.other_classes = len(ranked[PROBABILITY_ROWS:])
            entry.other_probability = sum(c.probability for c in ranked[PROBABILITY_ROWS:])
            for evidence in verdict_evidence(verdict=verdict, names=names):
                name = (evidence.reference.image.name or "") if evidence.reference else ""
                entry.references.append(ReferenceThumbnail(evidence, thumbnail(name)))
        entries.append(entry)

    return {
        "case": case,
        "entries": entries,
        "decision_counts": _decision_counts(case),
        "any_not_pretrained": any(e.verdict is not None and not e.verdict.pretrained for e in entries),
        "audit_trail": _audit_trail(case, submissions),
        "generated_at": timezone.now(),
        "generated_by": generated_by if generated_by is not None and generated_by.is_authenticated else None,
        "platform_version": platform_version(),
    }
