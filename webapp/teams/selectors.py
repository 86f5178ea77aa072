from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User

from webapp.teams.models import Membership, Team


def user_or_none(actor: AbstractBaseUser | AnonymousUser | None) -> User | None:
    """The signed-in user behind a request or an action, or None (anonymous, or no one: a system task)."""
    return actor if isinstance(actor, User) and actor.is_authenticated else None


def membership_for_user(*, user: AbstractBaseUser | AnonymousUser) -> Membership | None:
    signed_in = user_or_none(user)
    if signed_in is None:
        return None
    return Membership.objects.select_related("team").filter(user=signed_in).first()


def team_for_user(*, user: AbstractBaseUser | AnonymousUser) -> Team | None:
    membership = membership_for_user(user=user)
    return membership.team if membership else None


def user_is_team_admin(*, user: AbstractBaseUser | AnonymousUser) -> bool:
    membership = membership_for_user(user=user)
    return membership is not None and membership.is_admin


def user_is_registry_admin(*, user: AbstractBaseUser | AnonymousUser) -> bool:
    """Site staff, or a user the staff granted the permission to manage the registry."""
    signed_in = user_or_none(user)
    return signed_in is not None and (signed_in.is_staff or signed_in.has_perm("registry.change_generator"))
