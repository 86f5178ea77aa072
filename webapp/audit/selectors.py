from __future__ import annotations

from django.db.models import QuerySet

from webapp.audit.models import AuditEvent


def audit_event_list(*, action: str = "", team_id: int | None = None) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.select_related("actor", "team")
    if action:
        events = events.filter(action=action)
    if team_id is not None:
        events = events.filter(team_id=team_id)
    return events


def audit_events_for(*, object_type: str, object_ids: list[str]) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.select_related("actor").filter(object_type=object_type, object_id__in=object_ids)
