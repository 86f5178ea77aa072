from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models

from webapp.audit.models import AuditEvent
from webapp.teams.models import Team
from webapp.teams.selectors import user_or_none


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
        actor=user_or_none(actor),
        team=team,
        action=action,
        object_type=(target._meta.model_name or "") if target is not None else "",
        object_id=str(target.pk) if target is not None else "",
        detail=detail or {},
    )
