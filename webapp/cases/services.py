"""Writes of cases: create, edit. What a case's submissions add up to (summary, exports, reports) is the
reports app's."""

from __future__ import annotations

from django.contrib.auth.models import User

from webapp.audit.services import audit_record
from webapp.cases.models import Case
from webapp.teams.models import Team


def case_create(
    *, team: Team, user: User, title: str, reference: str = "", notes: str = ""
) -> Case:
    case = Case.objects.create(
        team=team, created_by=user, title=title.strip(), reference=reference.strip(), notes=notes
    )
    audit_record(actor=user, action="case_create", team=team, target=case, detail={"title": case.title})
    return case


def case_update(
    *,
    case: Case,
    user: User,
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
