from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest

from webapp.teams.selectors import membership_for_user, user_is_registry_admin


def platform(request: HttpRequest) -> dict[str, object]:
    # A page rendered before the authentication middleware ran (an early error) has no user yet.
    user = getattr(request, "user", None) or AnonymousUser()
    membership = membership_for_user(user=user)
    return {
        "membership": membership,
        "current_team": membership.team if membership else None,
        "is_registry_admin": user_is_registry_admin(user=user),
        # Offline deployments run a backbone with random weights: every page says so.
        "backbone_pretrained": bool(settings.ATTRIBUTION_PRETRAINED),
        "backbone_name": settings.ATTRIBUTION_BACKBONE,
    }
