from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models

from webapp.audit.models import AuditEvent
from webapp.teams.models import Team


def audit_record(
    *,
    actor: AbstractBaseUser | AnonymousUser | None,
    action: str,
    team: Team | None = None,
    target: models.Model | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record who did what: `upload`, `view`, `export`, `train`, `activate`, `rollback`, ..."""
    return AuditEvent.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        team=team,
        action=action,
        object_type=target._meta.model_name if target is not None else "",
        object_id=str(target.pk) if target is not None else "",
        detail=detail or {},
    )
