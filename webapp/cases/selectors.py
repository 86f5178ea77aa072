"""Reads of cases, always within one team."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet

from webapp.cases.models import Case
from webapp.teams.models import Team

MAX_ID = 2**63 - 1  # the largest primary key a database holds: a bigger id in a URL names nothing


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


def case_choices(*, team: Team, status: str = "") -> QuerySet[Case]:
    """The team's cases for a choice list (newest first), without counting their submissions: the
    history and verdict pages list them on every request, whatever the team's size."""
    cases = Case.objects.filter(team=team).only("id", "title", "reference", "status", "created_at")
    if status:
        cases = cases.filter(status=status)
    return cases.order_by("-created_at", "-id")


def case_get(*, team: Team, case_id: int) -> Case | None:
    if not 0 < case_id <= MAX_ID:
        return None
    return case_list(team=team).filter(pk=case_id).first()


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
