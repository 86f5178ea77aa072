"""Who may do what: one place for the rules that views and API views share."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from webapp.teams.models import Team
from webapp.teams.selectors import team_for_user, user_is_registry_admin, user_is_team_admin


class TeamMember(BasePermission):
    """The user belongs to a team; querysets are then filtered to that team."""

    message = "You are not a member of any team. Ask a team admin to add you."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return team_for_user(user=request.user) is not None


REGISTRY_ADMIN_MESSAGE = "Only registry admins (site staff, or users they grant it) may change the registry."
REATTRIBUTE_MESSAGE = "Only team admins and registry admins may re-attribute submissions."


def user_may_read_registry(*, user: AbstractBaseUser | AnonymousUser) -> bool:
    """Team members read the registry; registry admins (site staff) need no team to manage it."""
    return team_for_user(user=user) is not None or user_is_registry_admin(user=user)


def user_may_reattribute(*, user: AbstractBaseUser | AnonymousUser) -> bool:
    """Team admins re-run their team's submissions; registry admins who belong to a team may too."""
    return user_is_team_admin(user=user) or (
        user_is_registry_admin(user=user) and team_for_user(user=user) is not None
    )


CONFIRM_MESSAGE = "Only members of the image's team may confirm or dispute its verdict."


def user_may_confirm(*, user: AbstractBaseUser | AnonymousUser, team: Team) -> bool:
    """Any member of a submission's team (admin or not) may confirm or dispute its verdict, and clear that;
    nobody outside the team, site staff included."""
    member_of = team_for_user(user=user)
    return member_of is not None and member_of.pk == team.pk


class RegistryAdmin(BasePermission):
    message = REGISTRY_ADMIN_MESSAGE

    def has_permission(self, request: Request, view: APIView) -> bool:
        return user_is_registry_admin(user=request.user)


class RegistryReadAdminWrite(BasePermission):
    """Reads for team members and registry admins; writes for registry admins only."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in SAFE_METHODS:
            self.message = TeamMember.message
            return user_may_read_registry(user=request.user)
        self.message = REGISTRY_ADMIN_MESSAGE
        return user_is_registry_admin(user=request.user)


PROMOTE_MESSAGE = (
    "Only registry admins who belong to a team may add its confirmed submissions to the references."
)


def user_may_promote_references(*, user: AbstractBaseUser | AnonymousUser) -> bool:
    """Copying a team's confirmed submissions into the registry's references takes a registry admin of that
    team: site staff in no team never see team data, and a team member may not change the registry."""
    return user_is_registry_admin(user=user) and team_for_user(user=user) is not None


class ReferencePromoter(BasePermission):
    message = PROMOTE_MESSAGE

    def has_permission(self, request: Request, view: APIView) -> bool:
        return user_may_promote_references(user=request.user)


class Reattributor(BasePermission):
    message = REATTRIBUTE_MESSAGE

    def has_permission(self, request: Request, view: APIView) -> bool:
        return user_may_reattribute(user=request.user)


def request_user(request: HttpRequest | Request) -> User:
    """The signed-in user of a request that the view's permissions have let through (403 otherwise)."""
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated:
        raise PermissionDenied("Sign in first.")
    return user


def request_team(request: HttpRequest | Request) -> Team:
    team = team_for_user(user=request.user)
    if team is None:
        raise PermissionDenied(TeamMember.message)
    return team


ViewFunc = Callable[..., HttpResponse]


def team_required(view: ViewFunc) -> ViewFunc:
    """A logged-in team member; the view gets `team` as a keyword argument."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return view(request, *args, team=request_team(request), **kwargs)

    return wrapper


STAFF_MESSAGE = "Only site staff may open this page."


def staff_required(view: ViewFunc) -> ViewFunc:
    """Site staff. A signed-in user who is not gets the site's 403 page (not Django admin's login form)."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied(STAFF_MESSAGE)
        return view(request, *args, **kwargs)

    return wrapper


def registry_admin_required(view: ViewFunc) -> ViewFunc:
    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not user_is_registry_admin(user=request.user):
            raise PermissionDenied(REGISTRY_ADMIN_MESSAGE)
        return view(request, *args, **kwargs)

    return wrapper


def registry_reader_required(view: ViewFunc) -> ViewFunc:
    """A team member or a registry admin."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not user_may_read_registry(user=request.user):
            raise PermissionDenied(TeamMember.message)
        return view(request, *args, **kwargs)

    return wrapper


def reattributor_required(view: ViewFunc) -> ViewFunc:
    """A team admin, or a registry admin in a team; the view gets `team` as a keyword argument."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not user_may_reattribute(user=request.user):
            raise PermissionDenied(REATTRIBUTE_MESSAGE)
        return view(request, *args, team=request_team(request), **kwargs)

    return wrapper


def reference_promoter_required(view: ViewFunc) -> ViewFunc:
    """A registry admin in a team; the view gets `team` as a keyword argument."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not user_may_promote_references(user=request.user):
            raise PermissionDenied(PROMOTE_MESSAGE)
        return view(request, *args, team=request_team(request), **kwargs)

    return wrapper


class SiteStaff(BasePermission):
    """Site staff (the API side of `staff_required`): the unknown pile's clusters, which hold every team's
    images, are theirs to review."""

    message = STAFF_MESSAGE

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)
