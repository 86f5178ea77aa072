from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from webapp.registry.models import ReferenceImage
from webapp.submissions.models import Submission
from webapp.teams.selectors import team_for_user


def media_file_visible(*, user: AbstractBaseUser | AnonymousUser, name: str) -> bool:
    """A submission's image is its team's; reference images are the registry's, seen by every member."""
    team = team_for_user(user=user)
    if team is not None and Submission.objects.filter(team=team, image=name).exists():
        return True
    return (team is not None or bool(getattr(user, "is_staff", False))) and ReferenceImage.objects.filter(
        image=name
    ).exists()
