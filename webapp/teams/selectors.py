from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from webapp.teams.models import Membership, Team


def membership_for_user(*, user: AbstractBaseUser | AnonymousUser) -> Membership | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.select_related("team").filter(user=user).first()


def team_for_user(*, user: AbstractBaseUser | AnonymousUser) -> Team | None:
    membership = membership_for_user(user=user)
    return membership.team if membership else None


def user_is_team_admin(*, user: AbstractBaseUser | AnonymousUser) -> bool:
    membership = membership_for_user(user=user)
    return membership is not None and membership.is_admin


def user_is_registry_admin(*, user: AbstractBaseUser | AnonymousUser) -> bool:
    """Site staff, or a user the staff granted the permission to manage the registry."""
    if not user.is_authenticated:
        return False
    return bool(user.is_staff or user.has_perm("registry.change_generator"))  # type: ignore[union-attr]
