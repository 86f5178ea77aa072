"""What a case adds up to, written out: exports (CSV, JSON) and reports (a standalone HTML document, and a
PDF made from it with WeasyPrint), each recorded in the audit log."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.text import slugify

from webapp.audit.services import audit_record
from webapp.cases.models import Case
from webapp.cases.selectors import case_as_dict
from webapp.reports.selectors import (
    case_export_rows,
    case_report_context,
    case_summary,
    submission_export_rows,
)
from webapp.submissions.models import Submission
from webapp.submissions.selectors import submission_list
from webapp.teams.models import Team

ReportFormat = Literal["html", "pdf"]
Viewer: TypeAlias = AbstractBaseUser | AnonymousUser


def html_to_pdf(html: str) -> bytes:
    """Lay out an HTML document as a PDF without fetching anything: the report embeds its images
    as data: URIs, and a reference to a file or a server (an intranet address, /etc/passwd) is refused."""
    from weasyprint import HTML, URLFetcher  # heavy import, only when a PDF is made

    return bytes(HTML(string=html, url_fetcher=URLFetcher(allowed_protocols=("data",))).write_pdf())


def case_report_html(*, case: Case, generated_by: Viewer | None = None) -> str:
    context = case_report_context(case=case, generated_by=generated_by)
    return render_to_string("reports/case_report.html", context)


def case_report_pdf(*, case: Case, generated_by: Viewer | None = None) -> bytes:
    return html_to_pdf(case_report_html(case=case, generated_by=generated_by))


def case_report_export(*, case: Case, actor: Viewer, report_format: ReportFormat) -> bytes:
    """The report in one format, recorded in the audit log as an export by `actor`."""
    if report_format == "pdf":
        report = case_report_pdf(case=case, generated_by=actor)
    else:
        report = case_report_html(case=case, generated_by=actor).encode("utf-8")
    audit_record(actor=actor, action="export", team=case.team, target=case,
                 detail={"report": report_format, "bytes": len(report)})
    return report


EXPORT_FORMATS = ("csv", "json")


@dataclass(frozen=True)
class CaseExport:
    content: str
    content_type: str
    filename: str


def _csv_cell(value: Any) -> str:
    # Spreadsheets run cells that start with = + - @ as formulas: an uploader's file name must not.
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value)
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    fields = list(rows[0]) if rows else ["id", "file_name", "sha256", "status", "verdict"]
    writer = csv.writer(buffer)
    writer.writerow(fields)
    writer.writerows([[_csv_cell(row.get(field)) for field in fields] for row in rows])
    return buffer.getvalue()


def case_export(*, case: Case, user: User, export_format: str) -> CaseExport:
    """The case and every submission with its latest verdict, as CSV (one row per submission) or
    JSON (the case, its summary and the rows); the export is recorded in the audit log."""
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {export_format!r}")
    rows = case_export_rows(case=case)
    stem = f"case-{case.pk}-{slugify(case.title)[:40] or 'untitled'}-{timezone.now():%Y%m%d-%H%M%S}"
    if export_format == "json":
        document = {
            "case": case_as_dict(case=case),
            "summary": case_summary(case=case).as_dict(),
            "submissions": rows,
        }
        export = CaseExport(json.dumps(document, indent=2), "application/json", f"{stem}.json")
    else:
        export = CaseExport(_csv(rows), "text/csv; charset=utf-8", f"{stem}.csv")
    audit_record(
        actor=user,
        action="export",
        team=case.team,
        target=case,
        detail={"format": export_format, "rows": len(rows)},
    )
    return export


class CaseRefused(ValueError):
    """Submissions that cannot go into the case; the message says why, for the user."""


def case_submissions_add(*, case: Case, user: User, submission_ids: Sequence[int]) -> int:
    """Put the team's submissions among `submission_ids` into `case` (an open case of the same team), moving
    them from any other case. Ids of other teams' submissions, or of none, are refused as a whole: the
    message never says which exist. Returns how many were not in the case yet."""
    if case.status == Case.Status.CLOSED:
        raise CaseRefused(f"The case “{case.title}” is closed: reopen it to add images.")
    ids = sorted(set(submission_ids))
    with transaction.atomic():
        found = Submission.objects.filter(team=case.team, pk__in=ids)
        if found.count() != len(ids):
            raise CaseRefused("Some of the selected submissions are not your team's.")
        moved = sorted(found.exclude(case=case).values_list("pk", flat=True))
        Submission.objects.filter(pk__in=moved).update(case=case)
        audit_record(
            actor=user, action="case_add", team=case.team, target=case, detail={"submissions": moved}
        )
    return len(moved)


def submissions_export(*, team: Team, user: User, submission_ids: Sequence[int]) -> CaseExport:
    """The team's submissions among `submission_ids` as CSV, with the columns of a case export; recorded in
    the audit log."""
    submissions = submission_list(team=team).filter(pk__in=list(submission_ids)).order_by("created_at", "id")
    rows = submission_export_rows(submissions=submissions)
    audit_record(
        actor=user, action="export", team=team, detail={"format": "csv", "submissions": [r["id"] for r in rows]}
    )
    return CaseExport(_csv(rows), "text/csv; charset=utf-8", f"submissions-{timezone.now():%Y%m%d-%H%M%S}.csv")
