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
        "nav_section": nav_section(request),
    }


# The main navigation's sections: (URL namespace, URL name or "*") -> the section whose link is current.
_SECTIONS = {
    ("submissions", "upload"): "upload",
    ("submissions", "*"): "history",
    ("cases", "*"): "cases",
    ("reports", "*"): "cases",
    ("registry", "heads"): "heads",
    ("registry", "head_detail"): "heads",
    ("registry", "head_activate"): "heads",
    ("registry", "training_job"): "heads",
    ("registry", "*"): "registry",
    ("", "workers"): "workers",
    ("audit", "*"): "audit",
    ("feedback", "unknown_clusters"): "unknown",
    ("feedback", "unknown_cluster"): "unknown",
    ("", "account-tokens"): "tokens",
}


def nav_section(request: HttpRequest) -> str:
    """Which link of the main navigation names the page shown (its `aria-current`), or ""."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return ""
    namespace, name = match.namespace or "", match.url_name or ""
    return _SECTIONS.get((namespace, name)) or _SECTIONS.get((namespace, "*"), "")
