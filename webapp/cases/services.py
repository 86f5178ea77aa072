"""Writes of cases: create, edit, export."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from django.utils.text import slugify

from webapp.audit.services import audit_record
from webapp.cases.models import Case
from webapp.cases.selectors import case_as_dict, case_export_rows, case_summary
from webapp.teams.models import Team

EXPORT_FORMATS = ("csv", "json")


def case_create(
    *, team: Team, user: AbstractBaseUser, title: str, reference: str = "", notes: str = ""
) -> Case:
    case = Case.objects.create(
        team=team, created_by=user, title=title.strip(), reference=reference.strip(), notes=notes
    )
    audit_record(actor=user, action="case_create", team=team, target=case, detail={"title": case.title})
    return case


def case_update(
    *,
    case: Case,
    user: AbstractBaseUser,
    title: str | None = None,
    reference: str | None = None,
    notes: str | None = None,
    status: str | None = None,
) -> Case:
    """Change the given fields (None leaves a field as it is)."""
    if status is not None and status not in Case.Status.values:
        raise ValueError(f"status must be one of {', '.join(Case.Status.values)}, got {status!r}")
    changes = {
        key: value
        for key, value in {"title": title, "reference": reference, "notes": notes, "status": status}.items()
        if value is not None and getattr(case, key) != value
    }
    for key, value in changes.items():
        setattr(case, key, value)
    if changes:
        case.save(update_fields=list(changes))
        audit_record(
            actor=user, action="case_update", team=case.team, target=case, detail={"fields": sorted(changes)}
        )
    return case


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


def case_export(*, case: Case, user: AbstractBaseUser, export_format: str) -> CaseExport:
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
        buffer = io.StringIO()
        fields = list(rows[0]) if rows else ["id", "file_name", "sha256", "status", "verdict"]
        writer = csv.writer(buffer)
        writer.writerow(fields)
        writer.writerows([[_csv_cell(row.get(field)) for field in fields] for row in rows])
        export = CaseExport(buffer.getvalue(), "text/csv; charset=utf-8", f"{stem}.csv")
    audit_record(
        actor=user,
        action="export",
        team=case.team,
        target=case,
        detail={"format": export_format, "rows": len(rows)},
    )
    return export
