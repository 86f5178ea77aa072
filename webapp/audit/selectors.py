"""Reads of the audit log: the staff page's filtered list, each event with a link to its object and its
detail in words, and the same as CSV."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.db.models import QuerySet
from django.urls import NoReverseMatch, reverse

from webapp.audit.models import AuditEvent


def audit_event_list(
    *,
    action: str = "",
    team_id: int | None = None,
    actor: str = "",
    date_from: date | None = None,
    date_to: date | None = None,
) -> QuerySet[AuditEvent]:
    """Events, newest first, narrowed by action, team, actor (username) and day of the event."""
    events = AuditEvent.objects.select_related("actor", "team")
    if action:
        events = events.filter(action=action)
    if team_id is not None:
        events = events.filter(team_id=team_id)
    if actor:
        events = events.filter(actor__username=actor)
    if date_from is not None:
        events = events.filter(created_at__date__gte=date_from)
    if date_to is not None:
        events = events.filter(created_at__date__lte=date_to)
    return events.order_by("-created_at", "-id")


def audit_actions() -> list[str]:
    """Every action the log holds, for the filter's choices."""
    return sorted(AuditEvent.objects.values_list("action", flat=True).distinct())


def audit_events_for(*, object_type: str, object_ids: list[str]) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.select_related("actor").filter(object_type=object_type, object_id__in=object_ids)


# Where an event's object is shown: object type -> (URL name, how the URL's argument is found). The audit app
# sits under the apps whose objects it records, so it names their pages and never imports their models.
_PAGES: dict[str, tuple[str, str]] = {
    "submission": ("submissions:detail", "object_id"),
    "case": ("cases:detail", "object_id"),
    "trainingjob": ("registry:training_job", "object_id"),
    "headversion": ("registry:head_detail", "version"),
    "generator": ("registry:generator_detail", "slug"),
}
_LISTS = {"headversion": "registry:heads", "generator": "registry:generators"}
_NAMES = {"headversion": "head version", "trainingjob": "training job", "referenceimage": "reference image"}


@dataclass(frozen=True)
class AuditRow:
    event: AuditEvent
    target: str
    url: str
    details: list[tuple[str, str]]

    @property
    def detail_text(self) -> str:
        return "; ".join(f"{key}: {value}" for key, value in self.details)


def _value_words(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_value_words(v) for v in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_value_words(v)}" for k, v in sorted(value.items())) or "none"
    return str(value)


def audit_row(*, event: AuditEvent) -> AuditRow:
    """The event's object named and linked (where it has a page), and its detail as (key, words) pairs."""
    detail = event.detail if isinstance(event.detail, dict) else {"detail": json.dumps(event.detail)}
    target = f"{_NAMES.get(event.object_type, event.object_type)} #{event.object_id}" if event.object_type else ""
    if event.object_type == "headversion" and detail.get("version") is not None:
        target = f"head v{detail['version']}"
    url = ""
    if event.object_type in _PAGES:
        name, source = _PAGES[event.object_type]
        argument = event.object_id if source == "object_id" else detail.get(source)
        try:
            url = reverse(name, args=[argument]) if argument not in (None, "") else reverse(_LISTS[event.object_type])
        except (NoReverseMatch, KeyError):
            url = ""
    details = [(key.replace("_", " "), _value_words(value)) for key, value in sorted(detail.items())]
    return AuditRow(event=event, target=target, url=url, details=details)


CSV_FIELDS = ("time", "actor", "team", "action", "object_type", "object_id", "detail")


def _cell(text: str) -> str:
    # A spreadsheet runs a cell that starts with = + - @ as a formula: a file name in a detail must not.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def audit_events_csv(*, events: QuerySet[AuditEvent], limit: int = 100_000) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS)
    for event in events[:limit]:
        writer.writerow(
            [
                event.created_at.isoformat(),
                _cell(event.actor.get_username() if event.actor else ""),
                _cell(event.team.name if event.team else ""),
                event.action,
                event.object_type,
                event.object_id,
                _cell(json.dumps(event.detail, sort_keys=True, default=str)),
            ]
        )
    return buffer.getvalue()
