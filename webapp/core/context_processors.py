from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from webapp.teams.selectors import membership_for_user, user_is_registry_admin


def platform(request: HttpRequest) -> dict[str, object]:
    membership = membership_for_user(user=request.user)
    return {
        "membership": membership,
        "current_team": membership.team if membership else None,
        "is_registry_admin": user_is_registry_admin(user=request.user),
        # Offline deployments run a backbone with random weights: every page says so.
        "backbone_pretrained": bool(settings.ATTRIBUTION_PRETRAINED),
        "backbone_name": settings.ATTRIBUTION_BACKBONE,
    }
