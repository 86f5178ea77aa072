from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from webapp.common.permissions import user_may_read_registry
from webapp.registry.models import ReferenceImage
from webapp.registry.selectors import references_visible
from webapp.submissions.models import Submission
from webapp.teams.selectors import team_for_user


def media_file_visible(*, user: AbstractBaseUser | AnonymousUser, name: str) -> bool:
    """A submission's image is its team's; reference images are the registry's, seen by whoever may read
    the registry (team members and registry admins), except those promoted from a team's submission, which
    only that team and registry admins see."""
    team = team_for_user(user=user)
    if team is not None and Submission.objects.filter(team=team, image=name).exists():
        return True
    return (
        user_may_read_registry(user=user)
        and references_visible(ReferenceImage.objects.filter(image=name), user=user).exists()
    )
