from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.text import slugify

from webapp.teams.models import Membership, Team


def team_create(*, name: str) -> Team:
    team, _ = Team.objects.get_or_create(name=name, defaults={"slug": slugify(name)[:100] or "team"})
    return team


@transaction.atomic
def team_add_member(*, team: Team, username: str, role: str = Membership.Role.MEMBER) -> Membership:
    """Put a user in a team (a user belongs to one team); moving them to another team is explicit."""
    if role not in Membership.Role.values:
        raise ValueError(f"role must be one of {', '.join(Membership.Role.values)}, got {role!r}")
    user = get_user_model().objects.get(username=username)
    membership, _ = Membership.objects.update_or_create(user=user, defaults={"team": team, "role": role})
    return membership
